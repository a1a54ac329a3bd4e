/* Relais — the page's one live stream (browsers allow ~6 connections per host: a page holds ONE).
   Signed-in clinicians' pages open /live (body[data-live]); the inbox adds its position (`last`), a
   dossier page its dossier (`dossier=`). The stream carries the inbox's changes (`inbox`), the
   dossier's (`dossier`), new notifications (`notify`, for the bell: notifications.js listens to the
   `relais:bell` DOM event this file dispatches), and the connection's state. Reconnected by us
   (backoff, and the position the page shows as `last`, so the server can tell whether it missed
   anything), a watchdog on the server's pings (every 4 s), and an indicator that tells the truth:
   « en direct » (green) only while the stream is open and the server listens; « reconnexion… » (amber)
   as soon as either is lost; « hors ligne » (red) when that lasts OFFLINE_AFTER. */
(function () {
  "use strict";
  var SILENT_LOST = 9000, OFFLINE_AFTER = 6000, RETRY = [500, 1000, 2000, 3000, 5000];  // ms, ±20 %
  var STATES = { on: "en direct", off: "reconnexion…", down: "hors ligne" };

  function bell(kind, data) {
    var detail = null;
    try { detail = JSON.parse(data); } catch (err) { detail = null; }
    if (detail && typeof detail === "object") {
      document.dispatchEvent(new CustomEvent("relais:bell", { detail: { kind: kind, data: detail } }));
    }
  }

  /* The dossier page: its state, history and opinions are fetched again (htmx, #dossier-live) — unless
     the user is typing in one of its forms: then a banner offers « Actualiser » instead. */
  function typing(root) {
    var fields = root.querySelectorAll("#workspace textarea, #workspace input:not([type=hidden]), #workspace select");
    for (var i = 0; i < fields.length; i += 1) {
      var f = fields[i];
      if (f === document.activeElement) { return true; }
      if ((f.tagName === "TEXTAREA" || (f.type !== "checkbox" && f.type !== "radio" && f.tagName === "INPUT")) && f.value !== f.defaultValue) { return true; }
      if ((f.type === "checkbox" || f.type === "radio") && f.checked !== f.defaultChecked) { return true; }
      if (f.tagName === "SELECT") {
        for (var j = 0; j < f.options.length; j += 1) { if (f.options[j].selected !== f.options[j].defaultSelected) { return true; } }
      }
    }
    return false;
  }
  function dossierChanged() {
    var trigger = document.getElementById("dossier-live");
    if (!trigger || !window.htmx) { return; }
    var banner = document.getElementById("dossier-changed");
    if (typing(document)) {
      if (banner) { banner.hidden = false; }
      return;
    }
    if (banner) { banner.hidden = true; }
    window.htmx.trigger(trigger, "live:dossier");
  }
  function dossierGone() {
    var banner = document.getElementById("dossier-gone");
    if (banner) { banner.hidden = false; }
  }
  document.addEventListener("click", function (e) {
    if (e.target.closest(".js-dossier-refresh")) {
      e.preventDefault();
      var banner = document.getElementById("dossier-changed");
      if (banner) { banner.hidden = true; }
      var trigger = document.getElementById("dossier-live");
      if (trigger && window.htmx) { window.htmx.trigger(trigger, "live:dossier"); }
    }
  });

  function live(body) {
    var base = body.getAttribute("data-live");
    var anchor = document.querySelector("[data-position]");
    var last = anchor ? (anchor.getAttribute("data-position") || "") : "";
    var watched = document.querySelector("[data-live-dossier]");
    var dossier = watched ? watched.getAttribute("data-live-dossier") : "";
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
    function url() {
      var params = [];
      if (last) { params.push("last=" + encodeURIComponent(last)); }
      if (dossier) { params.push("dossier=" + encodeURIComponent(dossier)); }
      return base + (params.length ? "?" + params.join("&") : "");
    }
    function connect() {
      source = new EventSource(url());
      alive();
      source.addEventListener("ready", function (e) { position(e); alive(); listening(); bell("ready", e.data); });
      source.addEventListener("resync", function (e) {
        position(e); alive(); listening(); reload(); bell("resync", e.data);
        if (dossier) { dossierChanged(); }
      });
      source.addEventListener("inbox", function () { alive(); reload(); });
      source.addEventListener("dossier", function () { alive(); dossierChanged(); });
      source.addEventListener("notify", function (e) { alive(); bell("notify", e.data); });
      source.addEventListener("forbidden", function () { dossier = ""; close(); dossierGone(); connect(); });
      source.addEventListener("ping", alive);
      source.addEventListener("down", function () { alive(); lost(); });
      source.addEventListener("signedout", function (e) { leave(e.data); });
      source.addEventListener("end", function () { close(); connect(); });  // the server's lifetime: at once
      source.onerror = drop;  // not the browser's own reconnection: ours has a backoff and sends `last`
    }
    connect();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var body = document.body;
    if (body && body.hasAttribute("data-live") && window.EventSource) { live(body); }
  });
})();
