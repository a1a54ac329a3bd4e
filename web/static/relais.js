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
  /* Errors at the field: an htmx error fragment naming the field refused (data-field, web/errors.py) marks
     that field of the form sent — highlighted, its message beside it and linked by aria-describedby, focused. */
  function clearFieldErrors(form) {
    form.querySelectorAll(".field-error").forEach(function (p) { p.remove(); });
    form.querySelectorAll(".field-invalid").forEach(function (input) {
      input.classList.remove("field-invalid");
      input.removeAttribute("aria-invalid");
      var ids = (input.getAttribute("aria-describedby") || "").split(" ").filter(function (id) { return id && id.indexOf("field-error-") !== 0; });
      if (ids.length) { input.setAttribute("aria-describedby", ids.join(" ")); } else { input.removeAttribute("aria-describedby"); }
    });
  }
  var errorCount = 0;
  document.addEventListener("htmx:beforeRequest", function (e) {
    var form = e.detail.elt && e.detail.elt.closest ? e.detail.elt.closest("form") : null;
    if (form) { clearFieldErrors(form); }
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    if (!e.detail.target || e.detail.target.id !== "messages") { return; }
    var alert = e.detail.target.querySelector("[data-field]");
    var source = e.detail.requestConfig && e.detail.requestConfig.elt;
    var form = source && source.closest ? source.closest("form") : null;
    if (!alert || !form) { return; }
    var input = form.querySelector("[name='" + CSS.escape(alert.getAttribute("data-field")) + "']");
    if (!input || input.type === "hidden") { return; }
    var message = alert.querySelector("p");
    var p = document.createElement("p");
    p.className = "field-error";
    p.id = "field-error-" + (++errorCount);
    p.textContent = message ? message.textContent : alert.textContent;
    input.insertAdjacentElement("afterend", p);
    input.classList.add("field-invalid");
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", ((input.getAttribute("aria-describedby") || "") + " " + p.id).trim());
    var details = input.closest("details");
    if (details) { details.open = true; }
    input.focus();
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
