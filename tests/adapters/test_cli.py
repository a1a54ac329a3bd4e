"""The `relais` command against the real test database: directory, projections, errors."""

from __future__ import annotations

import io
import json

import pytest

from adapters.credentials import Credentials
from entrypoints.bootstrap import build_pool
from entrypoints.cli.main import build_parser, main
from tests.conftest import rpps


@pytest.fixture()
def cli(settings, monkeypatch):
    monkeypatch.setenv("RELAIS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAIS_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("RELAIS_CIPHER_KEY", raising=False)

    def run(*argv: str, stdin: str | None = None) -> int:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return main(list(argv))

    return run


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    commands = [
        ["up"], ["serve"], ["scp"], ["worker"], ["demo"], ["db", "upgrade"], ["projections", "run"],
        ["projections", "status"], ["projections", "rebuild"], ["directory", "add-establishment"],
        ["directory", "add-service"], ["directory", "add-practitioner"], ["directory", "add-node"],
        ["directory", "list"],
    ]
    for words in commands:
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([*words, "--help"])
        assert exit_.value.code == 0
        assert "usage: relais " + " ".join(words) in capsys.readouterr().out


def test_directory_from_the_command_line(cli, settings, capsys):
    assert cli("directory", "add-establishment", "--finess", "310781406", "--name", "CHU de Toulouse", "--department", "31") == 0
    assert cli("directory", "add-service", "--establishment", "310781406", "--code", "neuroradio", "--name", "Neuroradiologie") == 0
    assert cli(
        "directory", "add-practitioner", "--rpps", rpps(7), "--name", "Claire MARTIN", "--establishment", "310781406",
        "--role", "clinician", "--role", "auditor", "--service", "neuroradio", "--password-stdin",
        stdin="un mot de passe solide\n",
    ) == 0
    assert cli("directory", "add-node", "--aet", "TLSE_PACS", "--host", "127.0.0.1", "--port", "4242",
               "--establishment", "310781406", "--kind", "pacs") == 0
    capsys.readouterr()
    assert cli("directory", "list", "--json") == 0
    listing = json.loads(capsys.readouterr().out)
    assert [e["finess"] for e in listing["establishments"]] == ["310781406"]
    (p,) = listing["practitioners"]
    assert (p["rpps"], p["family_name"], p["given_name"], sorted(p["roles"])) == (rpps(7), "MARTIN", "Claire", ["auditor", "clinician"])
    assert [(n["aet"], n["port"], n["kind"]) for n in listing["nodes"]] == [("TLSE_PACS", 4242, "pacs")]
    pool = build_pool(settings, max_size=1)
    try:
        assert Credentials(pool).verify(p["id"], "un mot de passe solide").ok
    finally:
        pool.close()
    assert cli("directory", "list") == 0
    text = capsys.readouterr().out
    assert "CHU de Toulouse" in text and "TLSE_PACS" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("directory", "add-establishment", "--finess", "310781407", "--name", "X", "--department", "31"), "finess"),
        (("directory", "add-establishment", "--finess", "310781406", "--name", "X", "--department", "20"), "department"),
        (("directory", "add-practitioner", "--rpps", "10000000001", "--name", "A B", "--establishment", "310781406",
          "--role", "clinician"), "rpps"),
        (("directory", "add-node", "--aet", "X", "--host", "h", "--port", "104", "--establishment", "340780477",
          "--kind", "pacs"), "introuvable"),
        (("projections", "rebuild", "nope"), "projection inconnue"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, capsys, argv, message):
    cli("directory", "add-establishment", "--finess", "310781406", "--name", "CHU", "--department", "31")
    capsys.readouterr()
    assert cli(*argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_duplicate_establishment_is_refused(cli, capsys):
    args = ("directory", "add-establishment", "--finess", "310781406", "--name", "CHU", "--department", "31")
    assert cli(*args) == 0
    assert cli(*args) == 2
    assert "existe déjà" in capsys.readouterr().err


def test_short_password_is_refused_before_anything_is_recorded(cli, capsys):
    cli("directory", "add-establishment", "--finess", "310781406", "--name", "CHU", "--department", "31")
    assert cli("directory", "add-practitioner", "--rpps", rpps(8), "--name", "Luc PETIT", "--establishment", "310781406",
               "--role", "clinician", "--password-stdin", stdin="court\n") == 2
    capsys.readouterr()
    cli("directory", "list", "--json")
    assert json.loads(capsys.readouterr().out)["practitioners"] == []


def test_missing_argument_exits_2(cli, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli("directory", "add-establishment", "--name", "X")
    assert exit_.value.code == 2
    assert "--finess" in capsys.readouterr().err


def test_unreachable_database_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("RELAIS_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/relais")
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "injoignable" in err and "Traceback" not in err


def test_invalid_configuration_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("RELAIS_CIPHER_KEY", "not base64!")
    assert main(["db", "upgrade"]) == 2
    assert "RELAIS_CIPHER_KEY" in capsys.readouterr().err


def test_projection_status_and_rebuild(cli, capsys):
    cli("directory", "add-establishment", "--finess", "310781406", "--name", "CHU", "--department", "31")
    cli("directory", "add-establishment", "--finess", "340780477", "--name", "CHU Mtp", "--department", "34")
    capsys.readouterr()
    assert cli("projections", "status", "--json") == 0
    before = next(p for p in json.loads(capsys.readouterr().out) if p["name"] == "directory")
    assert (before["head"], before["lag"]) == (2, 2 - before["position"])
    assert cli("projections", "rebuild", "directory") == 0
    assert "retard 0" in capsys.readouterr().out
    cli("projections", "status", "--json")
    after = next(p for p in json.loads(capsys.readouterr().out) if p["name"] == "directory")
    assert (after["position"], after["lag"]) == (2, 0)
