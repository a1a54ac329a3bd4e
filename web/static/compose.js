/* Relais — the compose form's birthplace field: a combobox over the commune list (GET /communes, htmx).
   Typing asks the server for the places whose words start with what was typed; choosing one (click, or
   arrows then Entrée) puts its label in the field and its INSEE code in the hidden birth_place_code.
   Without this script the field still works: the name, « Toulouse (31) » or the code typed is resolved
   by the server on submit, with a clear error when it is unknown or ambiguous. (A file of its own: the
   CSP is default-src 'self'.) */
(function () {
  "use strict";
  function field() { return document.getElementById("f-birth_place"); }
  function list() { return document.getElementById("birth-place-options"); }
  function code() { return document.getElementById("f-birth_place_code"); }
  function options() { var l = list(); return l ? Array.prototype.slice.call(l.querySelectorAll("[role=option]")) : []; }

  function show(open) {
    var l = list(), f = field();
    if (!l || !f) return;
    open = open && options().length > 0;
    l.hidden = !open;
    f.setAttribute("aria-expanded", open ? "true" : "false");
    if (!open) f.removeAttribute("aria-activedescendant");
  }

  function activate(index) {
    var all = options(), f = field();
    all.forEach(function (o, i) { o.setAttribute("aria-selected", i === index ? "true" : "false"); });
    if (all[index]) { f.setAttribute("aria-activedescendant", all[index].id); all[index].scrollIntoView({ block: "nearest" }); }
  }

  function current() {
    var all = options();
    for (var i = 0; i < all.length; i++) if (all[i].getAttribute("aria-selected") === "true") return i;
    return -1;
  }

  function choose(option) {
    var f = field(), c = code();
    f.value = option.getAttribute("data-label");
    if (c) c.value = option.getAttribute("data-code");
    show(false);
    f.classList.remove("field-invalid");
    f.dispatchEvent(new Event("change", { bubbles: true }));
  }

  document.addEventListener("input", function (e) {
    if (e.target === field() && code()) code().value = "";  // typed again: the choice made is gone
  });

  document.addEventListener("keydown", function (e) {
    if (e.target !== field()) return;
    var all = options(), at = current(), open = list() && !list().hidden;
    if (e.key === "ArrowDown" && all.length) { e.preventDefault(); show(true); activate(Math.min(at + 1, all.length - 1)); }
    else if (e.key === "ArrowUp" && open) { e.preventDefault(); activate(Math.max(at - 1, 0)); }
    else if (e.key === "Enter" && open && at >= 0) { e.preventDefault(); choose(all[at]); }
    else if (e.key === "Escape" && open) { e.preventDefault(); show(false); }
  });

  document.addEventListener("mousedown", function (e) {
    var option = e.target.closest && e.target.closest("#birth-place-options [role=option]");
    if (option) { e.preventDefault(); choose(option); }  // mousedown: before the field loses focus
  });

  document.addEventListener("focusout", function (e) {
    if (e.target === field()) setTimeout(function () { show(false); }, 150);
  });

  document.addEventListener("htmx:afterSwap", function () {
    if (list() && field() && document.activeElement === field()) show(true);
  });
})();
