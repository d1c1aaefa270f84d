// Checkpoint upload: drop a folder or files (or choose them, by mouse or keyboard), watch a
// progress bar with bytes, rate and time left, cancel at any moment (the server keeps nothing
// of an upload it did not receive whole). Each file part is named "path:<relative path>" so
// the server keeps a model folder's layout (browsers send only base names as file names).
(function () {
  const form = document.getElementById("submit-form");
  if (!form) return;
  const folderInput = document.getElementById("folder-input");
  const filesInput = document.getElementById("files-input");
  const dropZone = document.getElementById("drop-zone");
  const list = document.getElementById("file-list");
  const errorBox = document.getElementById("submit-error");
  const progress = document.getElementById("progress");
  const bar = document.getElementById("progress-bar");
  const text = document.getElementById("progress-text");
  const button = document.getElementById("submit-button");
  const cancel = document.getElementById("cancel-button");
  const maxFileSize = Number(form.dataset.maxFileSize);
  let chosen = [];  // [{path, file}]
  let xhr = null;

  function human(n) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  function duration(seconds) {
    if (!isFinite(seconds)) return "…";
    if (seconds < 60) return Math.ceil(seconds) + " s";
    const minutes = Math.floor(seconds / 60);
    return minutes + " min " + Math.ceil(seconds - 60 * minutes) + " s";
  }

  function hiddenPath(path) {
    return path.split("/").some(function (s) { return s.startsWith("."); });
  }

  function show(entries) {
    chosen = entries.filter(function (c) { return c.path && !hiddenPath(c.path); });
    list.innerHTML = "";
    chosen.forEach(function (c) {
      const li = document.createElement("li");
      li.textContent = c.path + " — " + human(c.file.size);
      list.appendChild(li);
    });
    errorBox.hidden = true;
  }

  function fromInput(files, fromFolder) {
    return Array.from(files).map(function (file) {
      let path = file.name;
      if (fromFolder && file.webkitRelativePath) {
        // Drop the chosen folder's own name: "ckpt/config.json" -> "config.json".
        path = file.webkitRelativePath.split("/").slice(1).join("/");
      }
      return { path: path, file: file };
    });
  }

  folderInput.addEventListener("change", function () { show(fromInput(folderInput.files, true)); });
  filesInput.addEventListener("change", function () { show(fromInput(filesInput.files, false)); });

  // Drag and drop: a dropped folder is walked (its own name dropped, as with the chooser).
  function walk(entry, prefix) {
    return new Promise(function (resolve) {
      if (entry.isFile) {
        entry.file(function (file) { resolve([{ path: prefix + file.name, file: file }]); },
                   function () { resolve([]); });
        return;
      }
      const reader = entry.createReader();
      const found = [];
      (function more() {
        reader.readEntries(function (batch) {
          if (!batch.length) {
            Promise.all(found).then(function (lists) { resolve([].concat.apply([], lists)); });
            return;
          }
          batch.forEach(function (child) { found.push(walk(child, prefix + entry.name + "/")); });
          more();
        }, function () { resolve([]); });
      })();
    });
  }

  ["dragenter", "dragover"].forEach(function (name) {
    form.addEventListener(name, function (event) {
      event.preventDefault();
      dropZone.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    form.addEventListener(name, function () { dropZone.classList.remove("dragging"); });
  });
  form.addEventListener("drop", function (event) {
    event.preventDefault();
    const items = Array.from(event.dataTransfer.items || []);
    const entries = items.map(function (item) {
      return item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
    }).filter(Boolean);
    if (!entries.length) {
      show(fromInput(event.dataTransfer.files, false));
      return;
    }
    const single = entries.length === 1 && entries[0].isDirectory;
    Promise.all(entries.map(function (entry) { return walk(entry, ""); })).then(function (lists) {
      let files = [].concat.apply([], lists);
      if (single) {  // one folder dropped: its contents, as the folder chooser gives them
        files = files.map(function (c) {
          return { path: c.path.split("/").slice(1).join("/"), file: c.file };
        });
      }
      show(files);
    });
  });

  function fail(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    button.disabled = false;
    progress.hidden = true;
    xhr = null;
  }

  cancel.addEventListener("click", function () {
    if (xhr) xhr.abort();
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!chosen.length) { fail("Choose a model folder or at least one file."); return; }
    const tooBig = chosen.find(function (c) { return c.file.size > maxFileSize; });
    if (tooBig) { fail(tooBig.path + " is " + human(tooBig.file.size) + ", over the " + human(maxFileSize) + " limit."); return; }
    const data = new FormData();
    data.append("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    data.append("family", form.family.value.trim());
    data.append("label", form.label.value.trim());
    chosen.forEach(function (c) { data.append("path:" + c.path, c.file, c.file.name); });

    xhr = new XMLHttpRequest();
    const started = performance.now();
    xhr.open("POST", form.action || window.location.pathname);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRFToken", data.get("csrfmiddlewaretoken"));
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      const pct = Math.floor((100 * e.loaded) / e.total);
      const seconds = (performance.now() - started) / 1000;
      const rate = seconds > 0 ? e.loaded / seconds : 0;
      const left = rate > 0 ? (e.total - e.loaded) / rate : Infinity;
      bar.value = pct;
      text.textContent = pct + "% · " + human(e.loaded) + " of " + human(e.total) + " · " +
        human(rate) + "/s · " + duration(left) + " left";
    });
    xhr.upload.addEventListener("load", function () { text.textContent = "100% · hashing and reading headers…"; });
    xhr.addEventListener("load", function () {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = { detail: "Unexpected response (" + xhr.status + ")." }; }
      if (xhr.status === 201) { window.location = body.url; return; }
      fail(body.detail || ("Upload failed (" + xhr.status + ")."));
    });
    xhr.addEventListener("abort", function () { fail("Upload cancelled: nothing was stored."); });
    xhr.addEventListener("error", function () { fail("The connection broke during the upload; nothing was stored. Try again."); });
    button.disabled = true;
    progress.hidden = false;
    bar.value = 0;
    text.textContent = "0%";
    xhr.send(data);
  });
})();
