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
    var inbox = document.querySelector(".inbox[data-stream]");
    if (inbox && window.EventSource) { liveInbox(inbox); }
    document.querySelectorAll(".context-switch button").forEach(function (b) { b.classList.add("js-hidden"); });
  });
  /* The live inbox: one EventSource per page, reconnected by us (backoff, and the position the page
     shows as `last`, so the server can tell whether it missed anything), a watchdog on the server's
     pings (every 4 s), and an indicator that tells the truth: « en direct » (green) only while the
     stream is open and the server listens; « reconnexion… » (amber) as soon as either is lost;
     « hors ligne » (red) when that lasts OFFLINE_AFTER. `inbox` and `resync` reload rows and counters. */
  var SILENT_LOST = 9000, OFFLINE_AFTER = 6000, RETRY = [500, 1000, 2000, 3000, 5000];  // ms, ±20 %
  var STATES = { on: "en direct", off: "reconnexion…", down: "hors ligne" };
  function liveInbox(root) {
    var url = root.getAttribute("data-stream"), last = root.getAttribute("data-position") || "";
    var status = document.getElementById("live-status");
    var source = null, attempt = 0, lostSince = null, watchdog = null, offline = null, retry = null;
    function show(state) {
      if (!status) { return; }
      status.classList.remove("on", "off", "down");
      status.classList.add(state);
      status.setAttribute("data-state", state);
      status.textContent = STATES[state];
    }
    function lost() {
      if (lostSince === null) { lostSince = Date.now(); show("off"); }
      if (offline === null) {
        offline = setTimeout(function () { show("down"); }, Math.max(0, OFFLINE_AFTER - (Date.now() - lostSince)));
      }
    }
    function listening() {
      lostSince = null; attempt = 0;
      clearTimeout(offline); offline = null;
      show("on");
    }
    function reload() {
      var el = document.getElementById("live");
      if (el && window.htmx) { window.htmx.trigger(el, "live:inbox"); }
    }
    function alive() {
      clearTimeout(watchdog);
      watchdog = setTimeout(drop, SILENT_LOST);
    }
    function close() {
      clearTimeout(watchdog);
      if (source) { source.close(); source = null; }
    }
    function leave(why) {  // the session no longer holds: no more retries, the page goes where the user is told why
      close(); clearTimeout(retry); clearTimeout(offline);
      if (why === "role") { window.location.assign("/"); return; }  // the context chooser says what was withdrawn
      var here = window.location.pathname + window.location.search;
      window.location.assign(why === "desactive" ? "/login?motif=desactive" : "/login?expiree=1&next=" + encodeURIComponent(here));
    }
    function drop() {  // the stream failed or fell silent: amber now, try again with backoff
      close(); lost();
      clearTimeout(retry);
      var delay = RETRY[Math.min(attempt, RETRY.length - 1)] * (0.8 + 0.4 * Math.random());
      attempt += 1;
      retry = setTimeout(connect, delay);
      // A stream refused because the session ended looks like any failure to EventSource: ask.
      fetch("/session/ping", { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (r) { if (r.status === 401) { leave("expiree"); } })
        .catch(function () { /* the server is out of reach: the indicator says so, retries go on */ });
    }
    function position(e) { if (e.lastEventId) { last = e.lastEventId; } }
    function connect() {
      source = new EventSource(url + (last ? "?last=" + encodeURIComponent(last) : ""));
      alive();
      source.addEventListener("ready", function (e) { position(e); alive(); listening(); });
      source.addEventListener("resync", function (e) { position(e); alive(); listening(); reload(); });
      source.addEventListener("inbox", function () { alive(); reload(); });
      source.addEventListener("ping", alive);
      source.addEventListener("down", function () { alive(); lost(); });
      source.addEventListener("signedout", function (e) { leave(e.data); });
      source.addEventListener("end", function () { close(); connect(); });  // the server's lifetime: at once
      source.onerror = drop;  // not the browser's own reconnection: ours has a backoff and sends `last`
    }
    connect();
  }
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
