/* Relais — nothing typed is lost when a session ends, and the user is warned before it does.
   (A file of its own, no inline script, no eval: the CSP is default-src 'self'.)

   Drafts: what is typed in a page's forms (those sent by POST) is kept in the browser as the user
   types, keyed by the signed-in user and the address the form is sent to, and put back when that
   form shows again: after the sign-in that follows an expired session, after a reload, or on the
   steps of a form walked again. A form sent with htmx forgets its draft when the server accepts it;
   a form sent the classic way, when the answer is a redirect (the server recorded it: Post/Redirect/
   Get); a page shown in answer to a form (a next step, a refusal) keeps the drafts of the way there.

   Storage: sessionStorage, never localStorage, and never sent anywhere. Drafts hold patient data and
   hospital workstations are shared: sessionStorage belongs to this tab only and dies with it, and
   signing out empties it. Passwords, files and hidden fields (tokens, versions) are never kept.

   Session: the store forgets a session unused for `data-idle-timeout` seconds (web/session.py
   IDLE_TIMEOUT); five minutes before, a banner offers « Rester connecté », which pings the server. */
(function () {
  "use strict";
  var PREFIX = "relais.draft:", AFTER_LOGIN = "relais.after-login", WARN_BEFORE = 300, SAVE_DELAY = 300;
  var SKIPPED = { hidden: 1, password: 1, file: 1, submit: 1, button: 1, reset: 1, image: 1 };
  var store = null;
  try {
    store = window.sessionStorage;
    store.setItem("relais.probe", "1");
    store.removeItem("relais.probe");
  } catch (e) { store = null; }  // storage disabled: no drafts, nothing else changes

  function user() { return document.body ? document.body.getAttribute("data-user") : null; }
  function target(form) {
    var raw = form.getAttribute("action") || form.getAttribute("hx-post") || window.location.pathname;
    var url = new URL(raw, window.location.href);
    return url.pathname + url.search;
  }
  function eligible(form) {
    if (!store || !form || form.tagName !== "FORM" || form.hasAttribute("data-no-draft") || !user()) { return false; }
    return (form.getAttribute("method") || "").toLowerCase() === "post" || form.hasAttribute("hx-post");
  }
  // Hidden fields that tell apart forms sent to one address (one dossier's sends: one opinion form each).
  var KEY_FIELDS = ["send_id"];
  function key(form) {
    var extra = KEY_FIELDS.map(function (name) {
      var el = form.querySelector("input[type=hidden][name='" + name + "']");
      return el ? "&" + name + "=" + el.value : "";
    }).join("");
    return PREFIX + user() + ":" + target(form) + extra;
  }
  function fields(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      return el.name && !el.disabled && !SKIPPED[(el.type || "").toLowerCase()];
    });
  }
  function read(form) {
    var values = {}, filled = false, counts = {};
    fields(form).forEach(function (el) {
      var type = (el.type || "").toLowerCase();
      if (type === "radio") {
        if (el.checked) { values["r:" + el.name] = el.value; filled = true; }
      } else if (type === "checkbox") {
        values["c:" + el.name + "=" + el.value] = el.checked;
        if (el.checked) { filled = true; }
      } else {
        var n = counts[el.name] = (counts[el.name] || 0) + 1;  // several fields of one name, in order
        values["v:" + el.name + "#" + n] = el.value;
        if (el.value) { filled = true; }
      }
    });
    return filled ? values : null;
  }
  function save(form, submitted) {
    if (!eligible(form)) { return; }
    var values = read(form);
    try {
      if (values) { store.setItem(key(form), JSON.stringify({ at: Date.now(), submitted: !!submitted, values: values })); }
      else { store.removeItem(key(form)); }
    } catch (e) { /* storage full: the draft is not kept, typing goes on */ }
  }
  function load(form) {
    try { return JSON.parse(store.getItem(key(form)) || "null"); } catch (e) { return null; }
  }
  function restore(form) {
    if (!eligible(form)) { return; }
    var draft = load(form);
    if (!draft || !draft.values) { return; }
    var changed = 0, counts = {};
    fields(form).forEach(function (el) {
      var type = (el.type || "").toLowerCase(), v;
      if (type === "radio") {
        v = draft.values["r:" + el.name];
        if (v !== undefined && el.checked !== (el.value === v)) { el.checked = el.value === v; changed += 1; }
      } else if (type === "checkbox") {
        v = draft.values["c:" + el.name + "=" + el.value];
        if (v !== undefined && el.checked !== v) { el.checked = v; changed += 1; }
      } else {
        var n = counts[el.name] = (counts[el.name] || 0) + 1;
        v = draft.values["v:" + el.name + "#" + n];
        if (typeof v === "string" && v && el.value !== v) { el.value = v; changed += 1; }
      }
    });
    if (changed && form.closest("details")) { form.closest("details").open = true; }
    if (changed && !form.previousElementSibling?.classList.contains("draft-restored")) {
      var note = document.createElement("p");
      note.className = "alert alert-info draft-restored";
      note.setAttribute("role", "status");
      note.textContent = "Votre saisie a été restaurée.";
      form.parentNode.insertBefore(note, form);
    }
  }
  function forget(form) { if (eligible(form)) { store.removeItem(key(form)); } }
  function each(fn) {
    if (!store) { return; }
    var keys = [];
    for (var i = 0; i < store.length; i += 1) { keys.push(store.key(i)); }
    keys.forEach(function (k) { if (k && k.indexOf(PREFIX) === 0) { fn(k); } });
  }
  function forgetAll() {
    each(function (k) { store.removeItem(k); });
    if (store) { store.removeItem(AFTER_LOGIN); }
  }
  function forgetSubmitted() {
    var me = PREFIX + user() + ":";
    each(function (k) {
      if (k.indexOf(me) !== 0) { return; }
      try { if (JSON.parse(store.getItem(k)).submitted) { store.removeItem(k); } } catch (e) { store.removeItem(k); }
    });
  }
  function forgetOthers() {  // someone else signed in in this tab: the previous user's drafts go
    var me = PREFIX + user() + ":";
    each(function (k) { if (k.indexOf(me) !== 0) { store.removeItem(k); } });
  }
  function redirected() {
    var nav = window.performance && performance.getEntriesByType ? performance.getEntriesByType("navigation")[0] : null;
    return !!(nav && nav.redirectCount > 0);
  }

  // Typing saves, a little after the last key; sending saves at once (marked sent).
  var timers = new Map();
  function later(form) {
    clearTimeout(timers.get(form));
    timers.set(form, setTimeout(function () { timers.delete(form); save(form, false); }, SAVE_DELAY));
  }
  function flush() { timers.forEach(function (t, form) { clearTimeout(t); save(form, false); }); timers.clear(); }
  function typed(e) { var form = e.target && e.target.form; if (form && eligible(form)) { later(form); } }
  document.addEventListener("input", typed, true);
  document.addEventListener("change", typed, true);
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!store || !form || form.tagName !== "FORM") { return; }
    if (form.classList.contains("js-logout")) { forgetAll(); return; }  // signing out: nothing stays behind
    if (target(form) === "/login") { store.setItem(AFTER_LOGIN, "1"); return; }
    clearTimeout(timers.get(form)); timers.delete(form);
    save(form, true);
  }, true);
  window.addEventListener("pagehide", flush);
  // before the answer is swapped in (the form may be replaced by it, and a removed element's
  // later events no longer reach the document)
  document.addEventListener("htmx:beforeOnLoad", function (e) {
    var elt = e.detail && e.detail.elt, status = e.detail && e.detail.xhr ? e.detail.xhr.status : 0;
    if (elt && elt.tagName === "FORM" && status >= 200 && status < 300) { forget(elt); }
  });
  document.addEventListener("htmx:load", function (e) {
    var root = e.detail && e.detail.elt;
    if (!root || !root.querySelectorAll) { return; }
    if (root.tagName === "FORM") { restore(root); }
    root.querySelectorAll("form").forEach(restore);
  });

  // The warning before the idle expiry. Every request renews the session: htmx ones reset the count.
  var deadline = null, banner = null;
  function idle() { return parseInt((document.body && document.body.getAttribute("data-idle-timeout")) || "0", 10); }
  function renewed() {
    if (!idle()) { return; }
    deadline = Date.now() + idle() * 1000;
    if (banner) { banner.hidden = true; }
  }
  function check() {
    if (deadline !== null && banner && Date.now() >= deadline - WARN_BEFORE * 1000) { banner.hidden = false; }
  }
  function toLogin() {
    flush();
    var here = window.location.pathname + window.location.search;
    window.location.assign("/login?expiree=1" + (here && here !== "/" ? "&next=" + encodeURIComponent(here) : ""));
  }
  function keepAlive() {
    fetch("/session/ping", { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) { if (r.status === 401) { toLogin(); } else if (r.ok) { renewed(); } })
      .catch(function () { /* offline: the banner stays, the user may try again */ });
  }
  document.addEventListener("htmx:beforeOnLoad", renewed);
  document.addEventListener("click", function (e) {
    if (e.target.closest && e.target.closest(".js-keepalive")) { e.preventDefault(); keepAlive(); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var login = document.querySelector("[data-session]");
    if (login && login.getAttribute("data-session") === "signed-out") { forgetAll(); }
    if (!user()) { return; }  // the login page keeps the drafts of an expired session for after the sign-in
    var afterLogin = store && store.getItem(AFTER_LOGIN);
    if (store) { store.removeItem(AFTER_LOGIN); }
    forgetOthers();
    if (!afterLogin && redirected()) { forgetSubmitted(); }  // a form was recorded (Post/Redirect/Get)
    document.querySelectorAll("form").forEach(restore);
    banner = document.getElementById("session-warning");
    renewed();
    setInterval(check, 5000);
  });
})();
