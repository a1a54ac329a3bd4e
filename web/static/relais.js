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
  document.addEventListener("htmx:sseOpen", function () {
    var s = document.getElementById("live-status");
    if (s) { s.classList.add("on"); s.classList.remove("off"); s.textContent = "en direct"; }
  });
  document.addEventListener("htmx:sseError", function () {
    var s = document.getElementById("live-status");
    if (s) { s.classList.remove("on"); s.classList.add("off"); s.textContent = "reconnexion…"; }
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
