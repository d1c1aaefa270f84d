// Checkpoint upload with a progress bar. Each file part is named "path:<relative path>" so the
// server keeps a model folder's layout (browsers send only base names as file names).
(function () {
  const form = document.getElementById("submit-form");
  if (!form) return;
  const folderInput = document.getElementById("folder-input");
  const filesInput = document.getElementById("files-input");
  const list = document.getElementById("file-list");
  const errorBox = document.getElementById("submit-error");
  const progress = document.getElementById("progress");
  const bar = document.getElementById("progress-bar");
  const text = document.getElementById("progress-text");
  const button = document.getElementById("submit-button");
  const maxFileSize = Number(form.dataset.maxFileSize);
  let chosen = [];  // [{path, file}]

  function human(n) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  function show(files, fromFolder) {
    chosen = Array.from(files).map(function (file) {
      let path = file.name;
      if (fromFolder && file.webkitRelativePath) {
        // Drop the chosen folder's own name: "ckpt/config.json" -> "config.json".
        path = file.webkitRelativePath.split("/").slice(1).join("/");
      }
      return { path: path, file: file };
    }).filter(function (c) { return !c.path.split("/").some(function (s) { return s.startsWith("."); }); });
    list.innerHTML = "";
    chosen.forEach(function (c) {
      const li = document.createElement("li");
      li.textContent = c.path + " — " + human(c.file.size);
      list.appendChild(li);
    });
    errorBox.hidden = true;
  }

  folderInput.addEventListener("change", function () { show(folderInput.files, true); });
  filesInput.addEventListener("change", function () { show(filesInput.files, false); });

  function fail(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    button.disabled = false;
    progress.hidden = true;
  }

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

    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action || window.location.pathname);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRFToken", data.get("csrfmiddlewaretoken"));
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      const pct = Math.floor((100 * e.loaded) / e.total);
      bar.value = pct;
      text.textContent = pct + "% · " + human(e.loaded) + " of " + human(e.total);
    });
    xhr.upload.addEventListener("load", function () { text.textContent = "100% · hashing and reading headers…"; });
    xhr.addEventListener("load", function () {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = { detail: "Unexpected response (" + xhr.status + ")." }; }
      if (xhr.status === 201) { window.location = body.url; return; }
      fail(body.detail || ("Upload failed (" + xhr.status + ")."));
    });
    xhr.addEventListener("error", function () { fail("The connection broke during the upload; nothing was stored. Try again."); });
    button.disabled = true;
    progress.hidden = false;
    bar.value = 0;
    text.textContent = "0%";
    xhr.send(data);
  });
})();
