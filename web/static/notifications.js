/* Relais — the bell: unread count in the header, the tab title « (3) Relais » and the favicon's badge,
   kept live by the page's stream (live.js dispatches `relais:bell`). For « Immédiate » / « Urgente »
   notifications: a short sound (WebAudio, no file) and a desktop notification (Notification API; the
   permission is asked only through the button of the bell's panel, never on load), each as the
   user's preferences say (`sound`, `desktop`, sent by the stream). */
(function () {
  "use strict";
  var prefs = { sound: false, desktop: false };
  var audio = null;

  function titled(n) {
    var bare = document.title.replace(/^\(\d+\+?\) /, "");
    document.title = n > 0 ? "(" + n + ") " + bare : bare;
  }
  function favicon(n) {
    var link = document.getElementById("favicon");
    if (link) { link.setAttribute("href", "/notifications/favicon.svg?n=" + Math.max(0, n)); }
  }
  function count(n) {
    if (typeof n !== "number" || n < 0) { return; }
    var badge = document.getElementById("bell-count");
    if (badge) {
      badge.textContent = n > 99 ? "99+" : String(n);
      badge.hidden = n === 0;
      badge.setAttribute("data-count", String(n));
    }
    var button = document.getElementById("bell-summary");
    if (button) { button.setAttribute("aria-label", n > 0 ? "Notifications : " + n + " non lue" + (n > 1 ? "s" : "") : "Notifications"); }
    titled(n);
    favicon(n);
  }
  function refreshLists() {
    if (!window.htmx) { return; }
    var bell = document.getElementById("bell");
    if (bell && bell.open) { window.htmx.trigger(bell, "live:bell"); }
    var list = document.getElementById("notification-list");
    if (list) { window.htmx.ajax("GET", "/notifications", { target: "#notification-list", swap: "outerHTML" }); }
  }
  function unlockAudio() {  // browsers start audio only after a user gesture: the first click prepares it
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) { return; }
    if (!audio) { audio = new Ctx(); }
    if (audio.state === "suspended") { audio.resume(); }
  }
  function chime() {
    if (!audio) { unlockAudio(); }
    if (!audio || audio.state !== "running") { return; }
    var now = audio.currentTime;
    [0, 0.18].forEach(function (at, i) {
      var osc = audio.createOscillator(), gain = audio.createGain();
      osc.type = "sine";
      osc.frequency.value = i === 0 ? 880 : 1175;
      gain.gain.setValueAtTime(0.0001, now + at);
      gain.gain.exponentialRampToValueAtTime(0.25, now + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.16);
      osc.connect(gain); gain.connect(audio.destination);
      osc.start(now + at); osc.stop(now + at + 0.17);
    });
  }
  function desktop(data) {
    if (!("Notification" in window) || window.Notification.permission !== "granted") { return; }
    var n = new window.Notification(data.title || "Relais", {
      body: "Relais — télé-expertise", tag: "relais-" + (data.dossier || ""), icon: "/notifications/favicon.svg?n=1",
    });
    n.onclick = function () { window.focus(); if (data.url) { window.location.assign(data.url); } n.close(); };
  }
  function permissionButtons() {
    var show = prefs.desktop && "Notification" in window && window.Notification.permission === "default";
    document.querySelectorAll(".js-desktop-permission").forEach(function (b) { b.hidden = !show; });
  }

  document.addEventListener("relais:bell", function (e) {
    var kind = e.detail.kind, data = e.detail.data || {};
    if (typeof data.sound === "boolean") { prefs.sound = data.sound; }
    if (typeof data.desktop === "boolean") { prefs.desktop = data.desktop; }
    count(data.unread);
    permissionButtons();
    if (kind === "notify") {
      refreshLists();
      if (data.urgent) {
        if (prefs.sound) { chime(); }
        if (prefs.desktop) { desktop(data); }
      }
    } else if (kind === "resync") {
      refreshLists();
    }
  });
  document.addEventListener("click", function (e) {
    unlockAudio();
    var ask = e.target.closest(".js-desktop-permission");
    if (ask && "Notification" in window) {
      e.preventDefault();
      window.Notification.requestPermission().then(permissionButtons);
    }
  });
  document.addEventListener("htmx:afterSettle", function (e) {
    if (e.detail.elt && (e.detail.elt.id === "bell-panel" || e.detail.elt.id === "notification-list")) {
      permissionButtons();
      var unread = document.querySelector("#bell-panel[data-unread], #notification-list[data-unread]");
      if (unread) { count(parseInt(unread.getAttribute("data-unread"), 10)); }
    }
  });
})();
