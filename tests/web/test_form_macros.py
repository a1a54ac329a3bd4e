"""The form macros: inputs with their errors linked and focused, conditional items hidden and disabled, answers read."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from domain.forms import FormDefinition, Item, form_for
from domain.values import Workflow
from web import present

TEMPLATE = ('{% from "forms/_macros.html" import form_inputs, form_answers %}'
            '<form>{{ form_inputs(definition, answers, errors) }}</form><div id="read">{{ form_answers(definition, answers) }}</div>')


class Page(HTMLParser):
    """The elements of a page by id (attributes and text), and every input."""

    def __init__(self, html: str):
        super().__init__()
        self.by_id: dict[str, dict[str, Any]] = {}
        self.inputs: list[dict[str, Any]] = []
        self.links: list[str] = []
        self._open: list[dict[str, Any]] = []
        self.html = html
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element: dict[str, Any] = {k: ("" if v is None else v) for k, v in attrs}
        element["_text"] = ""
        if "id" in element:
            self.by_id[element["id"]] = element
        if tag == "input":
            self.inputs.append(element)
        if tag == "a":
            self.links.append(element.get("href", ""))
        if tag not in ("input", "br"):
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element["_text"] += data

    def input(self, name: str, value: str) -> dict[str, Any]:
        return next(i for i in self.inputs if i.get("name") == name and i.get("value") == value)


def render(definition: FormDefinition, answers: dict[str, Any], errors: dict[str, str]) -> Page:
    env = Environment(loader=FileSystemLoader("web/templates"), autoescape=select_autoescape(["html"]))
    present.register(env)
    return Page(env.from_string(TEMPLATE).render(definition=definition, answers=answers, errors=errors))


def test_errors_are_linked_to_their_field_and_the_first_is_focused() -> None:
    stroke = form_for(Workflow.STROKE_OPINION)
    page = render(stroke, {"time_reference": "onset", "nihss_total": "50"},
                  {"onset_at": "champ obligatoire", "nihss_total": "doit être entre 0 et 42"})
    onset = page.by_id["f-onset_at"]
    assert onset["aria-invalid"] == "true" and "f-onset_at-error" in onset["aria-describedby"]
    assert onset.__contains__("autofocus") and onset["type"] == "datetime-local"
    assert page.by_id["f-onset_at-error"]["_text"] == "champ obligatoire"
    nihss = page.by_id["f-nihss_total"]
    assert not nihss.__contains__("autofocus") and nihss["max"] == "42" and nihss["value"] == "50"
    assert "f-nihss_total-help" in nihss["aria-describedby"]
    assert [href for href in page.links if href.startswith("#f-")] == ["#f-onset_at", "#f-nihss_total"]
    assert page.input("form_version", "1")["value"] == "1"


def test_conditional_items_hidden_and_disabled_until_their_condition_holds() -> None:
    stroke = form_for(Workflow.STROKE_OPINION)
    page = render(stroke, {"time_reference": "onset", "anticoagulant": "no", "thrombolysis": "true"}, {})
    assert not page.by_id["f-onset_at-item"].__contains__("hidden")
    lkw = page.by_id["f-last_known_well_at-item"]
    assert lkw.__contains__("hidden") and page.by_id["f-last_known_well_at"].__contains__("disabled")
    assert '"question": "time_reference"' in lkw["data-enable-when"]
    assert page.by_id["f-anticoagulant_last_dose_at-item"].__contains__("hidden")
    assert not page.by_id["f-thrombolysis_at-item"].__contains__("hidden")  # « true » as typed counts
    assert page.input("thrombolysis", "true").__contains__("checked")


def test_answers_read_with_the_version_they_were_given_with() -> None:
    old = FormDefinition(id="wound", version=1, title="Plaie", items=(Item("size", "Taille", "integer", unit="cm"),))
    page = render(old, {"size": 4}, {})
    assert 'data-form-version="1"' in page.html and "<dd>4 cm</dd>" in page.html
    assert "Taille" in page.by_id["read"]["_text"]
    assert page.by_id["f-size"]["value"] == "4"
