// Small behaviours without inline handlers (the Content-Security-Policy forbids inline script):
// a <select data-autosubmit> submits its form when changed.
document.addEventListener("change", function (event) {
  if (event.target.matches("[data-autosubmit]") && event.target.form) {
    event.target.form.submit();
  }
});
