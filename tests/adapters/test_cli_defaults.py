"""`relais directory set-default-recipient | defaults` against the real test database."""

from __future__ import annotations

import io

import pytest

from entrypoints.bootstrap import build_app
from entrypoints.cli.main import main
from tests.conftest import rpps


@pytest.fixture()
def cli(settings, monkeypatch):
    monkeypatch.setenv("RELAIS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAIS_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("RELAIS_CIPHER_KEY", raising=False)
    return lambda *argv: main(list(argv))


def test_default_recipient_from_the_command_line(cli, settings, capsys, monkeypatch):
    assert cli("directory", "add-establishment", "--finess", "310781406", "--name", "CHU de Toulouse", "--department", "31") == 0
    assert cli("directory", "add-establishment", "--finess", "120780010", "--name", "CH de Rodez", "--department", "12") == 0
    assert cli("directory", "add-service", "--establishment", "310781406", "--code", "unv",
               "--name", "Astreinte neurovasculaire — UNV", "--specialty", "neurologie", "--kind", "on_call_pool") == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli("directory", "add-practitioner", "--rpps", rpps(9), "--name", "Sophie BERNARD", "--establishment", "310781406",
               "--role", "clinician", "--service", "unv") == 0
    assert cli("directory", "defaults") == 0
    assert "aucun destinataire par défaut" in capsys.readouterr().out

    assert cli("directory", "set-default-recipient", "--establishment", "120780010", "--workflow", "stroke_opinion",
               "--to-establishment", "310781406", "--to-service", "unv") == 0
    out = capsys.readouterr().out
    assert "Demande d'avis AVC aigu depuis CH de Rodez : CHU de Toulouse — Astreinte neurovasculaire — UNV (astreinte)" in out
    assert cli("directory", "set-default-recipient", "--establishment", "120780010", "--workflow", "emergency_opinion",
               "--to-establishment", "310781406", "--to-practitioner", rpps(9)) == 0
    assert cli("directory", "defaults", "--establishment", "120780010") == 0
    table = capsys.readouterr().out
    assert any("CH de Rodez" in line and "Demande d'avis Urgences" in line and "Sophie BERNARD" in line
               for line in table.splitlines())

    # a service of the wrong establishment, a missing target: clear French errors, nothing recorded
    assert cli("directory", "set-default-recipient", "--establishment", "120780010", "--workflow", "stroke_opinion",
               "--to-establishment", "120780010", "--to-service", "unv") == 2
    assert "inconnu dans CH de Rodez" in capsys.readouterr().err
    assert cli("directory", "set-default-recipient", "--establishment", "120780010", "--workflow", "stroke_opinion") == 2
    assert "--to-establishment" in capsys.readouterr().err

    assert cli("directory", "set-default-recipient", "--establishment", "120780010", "--workflow", "stroke_opinion",
               "--none") == 0
    assert "pas de destinataire par défaut" in capsys.readouterr().out
    app = build_app(settings)
    try:
        rodez = app.establishment(finess="120780010").id
        assert app.default_recipient(rodez, "stroke_opinion") is None
        assert app.default_recipient(rodez, "emergency_opinion") == {
            "establishment_id": app.establishment(finess="310781406").id, "service_id": None,
            "practitioner_id": app.practitioner(rpps=rpps(9)).id,
        }
    finally:
        app.close()
