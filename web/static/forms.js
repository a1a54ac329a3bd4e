// Structured forms: shows an item only while its conditions hold (data-enable-when, FHIR enableWhen);
// a hidden item's inputs are disabled, so they are neither required nor sent (the server ignores them too).
(function () {
  "use strict";

  function valueOf(form, code) {
    var inputs = form.querySelectorAll('[name="' + code + '"]');
    var values = [];
    inputs.forEach(function (input) {
      if (input.disabled) return;
      if ((input.type === "radio" || input.type === "checkbox") && !input.checked) return;
      if (input.value !== "") values.push(input.value);
    });
    var multi = inputs.length > 0 && inputs[0].type === "checkbox";
    return multi ? values : (values[0] || null);
  }

  function holds(form, condition) {
    var value = valueOf(form, condition.question);
    var answer = condition.answer === true ? "true" : condition.answer === false ? "false" : String(condition.answer);
    var empty = value === null || (Array.isArray(value) && value.length === 0);
    if (condition.operator === "exists") return empty !== Boolean(condition.answer);
    var found = Array.isArray(value) ? value.indexOf(answer) >= 0 : value === answer;
    return condition.operator === "=" ? found : (!empty && !found);
  }

  function refresh(form) {
    for (var pass = 0; pass < 3; pass++) {  // items depending on items that depend on others
      form.querySelectorAll("[data-enable-when]").forEach(function (item) {
        var conditions = JSON.parse(item.getAttribute("data-enable-when"));
        var shown = conditions.every(function (c) { return holds(form, c); });
        item.hidden = !shown;
        item.querySelectorAll("input, select, textarea").forEach(function (input) { input.disabled = !shown; });
      });
    }
  }

  function start(root) {
    root.querySelectorAll("[data-structured-form]").forEach(function (form) {
      if (form.dataset.formReady) return;
      form.dataset.formReady = "1";
      form.addEventListener("change", function () { refresh(form); });
      refresh(form);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { start(document); });
  document.addEventListener("htmx:afterSettle", function (e) { start(e.target); });
  if (document.readyState !== "loading") start(document);
})();
