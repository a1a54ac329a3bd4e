"""`relais directory set-deadline | set-escalation | set-away | deadlines` against the real test database."""

from __future__ import annotations

import io

import pytest

from domain.directory import Establishment, Practitioner, practitioner_id
from entrypoints.bootstrap import build_app
from entrypoints.cli.main import main
from tests.conftest import rpps


@pytest.fixture()
def cli(settings, monkeypatch):
    monkeypatch.setenv("RELAIS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAIS_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("RELAIS_CIPHER_KEY", raising=False)
    return lambda *argv: main(list(argv))


def test_deadlines_escalation_and_absence_from_the_command_line(cli, settings, capsys, monkeypatch):
    assert cli("directory", "add-establishment", "--finess", "340780477", "--name", "CHU de Montpellier", "--department", "34") == 0
    assert cli("directory", "add-service", "--establishment", "340780477", "--code", "neuroradio", "--name", "Neuroradiologie") == 0
    assert cli("directory", "add-service", "--establishment", "340780477", "--code", "astreinte", "--name", "Astreinte",
               "--kind", "on_call_pool") == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli("directory", "add-practitioner", "--rpps", rpps(8), "--name", "Paul DURAND", "--establishment", "340780477",
               "--role", "clinician", "--service", "neuroradio") == 0
    capsys.readouterr()

    assert cli("directory", "set-deadline", "--establishment", "340780477", "--service", "neuroradio",
               "--workflow", "stroke_opinion", "--urgency", "stat", "--accept", "5m", "--answer", "20m") == 0
    assert "prise en charge 5 min, réponse 20 min" in capsys.readouterr().out
    assert cli("directory", "deadlines", "--establishment", "340780477", "--service", "neuroradio") == 0
    table = capsys.readouterr().out
    assert any("Demande d'avis AVC aigu" in line and "Immédiate" in line and "20 min" in line and "service" in line
               for line in table.splitlines())
    assert cli("directory", "set-deadline", "--establishment", "340780477", "--service", "neuroradio",
               "--workflow", "stroke_opinion", "--accept", "2h") == 2  # --answer missing: a clear error
    assert "--accept et --answer" in capsys.readouterr().err
    assert cli("directory", "set-deadline", "--establishment", "340780477", "--service", "neuroradio",
               "--workflow", "stroke_opinion", "--accept", "2 semaines", "--answer", "1h") == 2
    assert "délai invalide" in capsys.readouterr().err

    assert cli("directory", "set-escalation", "--establishment", "340780477", "--service", "neuroradio",
               "--to-service", "astreinte") == 0
    assert cli("directory", "set-away", "--rpps", rpps(8), "--until", "2026-12-31") == 0
    assert "absent" in capsys.readouterr().out

    app = build_app(settings)
    try:
        est = app.load(Establishment, app.establishment(finess="340780477").id, "e")
        neuro = next(s for s in est.services.values() if s["code"] == "neuroradio")
        assert neuro["deadlines"] == {"stroke_opinion/stat": {"accept": 5, "answer": 20}}
        assert neuro["escalation"]["to_service_id"] == next(s for s in est.services.values() if s["code"] == "astreinte")["service_id"]
        assert app.load(Practitioner, practitioner_id(rpps(8)), "p").away == {"away": True, "until": "2026-12-31"}
    finally:
        app.close()
