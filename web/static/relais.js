/* Relais — small behaviours (no inline scripts: the CSP forbids them). */
(function () {
  "use strict";
  var seen = null;
  function rowIds() {
    var ids = {};
    document.querySelectorAll("#results [data-dossier]").forEach(function (el) { ids[el.getAttribute("data-dossier")] = true; });
    return ids;
  }
  document.addEventListener("click", function (e) {
    var t = e.target;
    if (t.closest(".js-print")) { e.preventDefault(); window.print(); }
    if (t.closest(".js-back")) { e.preventDefault(); window.history.back(); }
  });
  document.addEventListener("change", function (e) {
    if (e.target.matches(".js-autosubmit")) { e.target.form.submit(); }
  });
  document.addEventListener("DOMContentLoaded", function () {
    seen = rowIds();
    document.querySelectorAll(".context-switch button").forEach(function (b) { b.classList.add("js-hidden"); });
  });
  /* The live stream (inbox, dossier, bell) is in live.js: one per page. */
  /* Imaging import: a CD chosen as a folder must keep the path of each file in it (webkitRelativePath),
     or its DICOMDIR references nothing. Chromium already sends it as the multipart filename; this sends
     it explicitly for browsers that would send the bare name (the server places files at that path). */
  document.addEventListener("htmx:configRequest", function (e) {
    var form = e.detail.elt;
    if (!form || !form.matches || !form.matches("form.js-keep-paths") || !e.detail.formData) { return; }
    var data = e.detail.formData;
    data.delete("files");
    form.querySelectorAll("input[type=file][name=files]").forEach(function (input) {
      Array.prototype.forEach.call(input.files, function (f) { data.append("files", f, f.webkitRelativePath || f.name); });
    });
  });
  document.addEventListener("htmx:afterSettle", function (e) {
    if (!e.detail.elt || e.detail.elt.id !== "results") { return; }
    var now = rowIds();
    if (e.detail.requestConfig && e.detail.requestConfig.elt && e.detail.requestConfig.elt.id === "live" && seen) {
      document.querySelectorAll("#results [data-dossier]").forEach(function (el) {
        if (!seen[el.getAttribute("data-dossier")]) { el.classList.add("arrived"); }
      });
    }
    seen = now;
  });
})();
