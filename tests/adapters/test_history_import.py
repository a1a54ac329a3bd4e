"""`relais import-history`: file formats, per-line refusals, idempotency, the directory, audit marks."""

from __future__ import annotations

import csv
import json
from datetime import datetime

import psycopg
import pytest

from adapters.history_import import LegacyFileError, parse_legacy_text
from application.history import legacy_dossier_id
from entrypoints.cli.main import main
from tests.history import HEADER, A, B, C, N, P, csv_text, row


@pytest.fixture()
def cli(settings, monkeypatch, tmp_path):
    monkeypatch.setenv("RELAIS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAIS_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("RELAIS_CIPHER_KEY", raising=False)

    def run(*argv: str) -> int:
        return main(list(argv))

    return run


def write(tmp_path, content: str | bytes, name: str = "legacy.csv"):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return str(path)


def count_events(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM relais_events").fetchone()[0]


def summary(out: str) -> dict[str, int]:
    """The figures of the summary printed on stdout."""
    import re

    found = {}
    for key, pattern in (
        ("imported", r"importés : (\d+) télédossiers \((\d+) envois, (\d+) événements"),
        ("unchanged", r"déjà présents, identiques : (\d+)"),
        ("refused", r"refusés : (\d+) lignes"),
        ("added", r"établissements ajoutés à l'annuaire : (\d+)"),
    ):
        m = re.search(pattern, out)
        found[key] = int(m.group(1)) if m else 0
        if key == "imported" and m:
            found["sends"], found["events"] = int(m.group(2)), int(m.group(3))
    return found


# ---------------------------------------------------------------------------- reading the file


@pytest.mark.parametrize(
    ("variant", "kwargs"),
    [
        ("LF", {}),
        ("CRLF + BOM (Excel « CSV UTF-8 »)", {"newline": "\r\n", "bom": True}),
        ("semicolons, CRLF (Excel français)", {"newline": "\r\n", "delimiter": ";"}),
        ("old Mac CR", {"newline": "\r"}),
    ],
)
def test_the_same_history_in_every_flavour_of_csv(variant, kwargs):
    parsed = parse_legacy_text(csv_text(**kwargs))
    assert not parsed.errors, variant
    assert parsed.rows == 12
    assert sorted(d.legacy_id for d in parsed.dossiers) == sorted(f"D{i}" for i in range(1, 12))
    d4 = next(d for d in parsed.dossiers if d.legacy_id == "D4")
    assert [s.line for s in d4.sends] == [5, 6]  # line numbers of the file (header = 1)
    assert d4.sends[1].channel == "national_network" and d4.sends[1].recipient_region == "IDF"


def test_quoted_fields_and_extra_columns_and_column_order():
    header = HEADER.split(",")
    shuffled = list(reversed(header)) + ["commentaire"]
    line = dict(zip(header, row("Q1", "stroke_opinion", "2023-01-01T10:00:00+01:00", A, B, "none").split(","), strict=True))
    values = [f'"{line[c]}"' for c in reversed(header)] + ['"texte, avec une virgule\net un saut de ligne"']
    parsed = parse_legacy_text(",".join(shuffled) + "\n" + ",".join(values) + "\n")
    assert not parsed.errors and parsed.extra_columns == ["commentaire"]
    (d,) = parsed.dossiers
    assert (d.legacy_id, d.workflow, d.sends[0].recipient_finess) == ("Q1", "stroke_opinion", B[0])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "fichier vide"),
        ("dossier_id;workflow\nD1;legacy\n", "colonne(s) manquante(s) : created_at"),
        ("dossier_id workflow created_at\n", "aucun séparateur"),
        (HEADER + ",workflow\n", "en double : workflow"),
        (HEADER + '\n"D1,imaging_transfer\n', "CSV mal formé"),
        (HEADER + "\n", "aucune ligne"),
        ("\ufeff" + HEADER.replace(",", ";") + "\r\n\r\n;;;;\r\n", "aucune ligne"),  # Excel's empty rows
    ],
)
def test_a_file_that_cannot_be_read_is_refused_as_a_whole(content, message):
    with pytest.raises(LegacyFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_legacy_text(content)


def test_every_invalid_row_is_reported_with_its_line_and_reason():
    OK = "2023-01-01T09:00:00+01:00"
    now = datetime.fromisoformat("2024-06-15T12:00:00+00:00")
    lines = [
        HEADER,
        row("OK1", "imaging_transfer", "2023-01-01T10:00:00+01:00", A, B, "dicom_store"),
        row("E1", "teleconsultation", "2023-01-01T10:00:00+01:00", A, B, "dicom_store"),
        row("E2", "imaging_transfer", "2023-01-01T10:00:00", A, B, "dicom_store", created=OK),
        row("E3", "imaging_transfer", "01/01/2023 10:00", A, B, "dicom_store", created=OK),
        row("E4", "imaging_transfer", "2023-01-01T10:00:00+01:00", ("310781407", "31", "OCC"), B, "dicom_store"),
        row("E5", "imaging_transfer", "2023-01-01T10:00:00+01:00", A, ("750100018", "75", "OCC"), "dicom_store"),
        row("E6", "imaging_transfer", "2023-01-01T10:00:00+01:00", A, P, "dicom_store"),
        row("E7", "imaging_transfer", "2023-01-01T10:00:00+01:00", A, B, "dicom_store", channel="email_invitation"),
        row("E8", "imaging_transfer", "2023-01-01T10:00:00+01:00", A, B, "dicom_store", "2023-01-01T09:00:00+01:00"),
        row("E9", "imaging_transfer", "2024-07-01T10:00:00+02:00", A, B, "dicom_store", created=OK),
        row("E10", "imaging_transfer", "2023-01-01T10:00:00+01:00", A, B, "cdrom"),
        "E11,imaging_transfer,2023-01-01T10:00:00+01:00",
        row("E12", "imaging_transfer", "2023-01-01T10:00:00+01:00", A, B, "dicom_store"),
        row("E12", "stroke_opinion", "2023-01-01T10:00:00+01:00", A, C, "dicom_store"),
        row("E13", "imaging_transfer", "2023-01-01T10:00:00+01:00", A, B, "dicom_store"),
        row("E13", "imaging_transfer", "2023-01-01T10:00:00+01:00", A, B, "dicom_store"),
        row("E14", "imaging_transfer", "2023-01-01T10:00:00+01:00", A, B, "dicom_store"),
        row("E14", "imaging_transfer", "2023-01-01T10:00:00+01:00", A, C, "bad_source"),
        row("E15", "imaging_transfer", "2023-01-01T10:00:00+01:00", A, ("340780477", "30", "OCC"), "dicom_store"),
        row("", "imaging_transfer", "2023-01-01T10:00:00+01:00", A, B, "dicom_store"),
    ]
    parsed = parse_legacy_text("\n".join(lines) + "\n", now=now)
    assert [d.legacy_id for d in parsed.dossiers] == ["OK1", "E13"]  # E13: identical rows are two sends
    reasons = {e.line: str(e) for e in parsed.errors}
    assert "workflow : valeur inconnue « teleconsultation »" in reasons[3]
    assert "sent_at : heure sans décalage UTC « 2023-01-01T10:00:00 »" in reasons[4]
    assert "sent_at : date invalide « 01/01/2023 10:00 »" in reasons[5]
    assert "requester_finess : FINESS invalide « 310781407 » : clé de contrôle erronée" in reasons[6]
    assert "recipient_region : « OCC » ne correspond pas au département 75 (IDF)" in reasons[7]
    assert "inter_regional_channel : obligatoire pour un destinataire hors Occitanie" in reasons[8]
    assert "inter_regional_channel : doit être vide pour un destinataire d'Occitanie" in reasons[9]
    assert "answered_at : antérieure à sent_at" in reasons[10]
    assert "sent_at : date dans le futur « 2024-07-01T10:00:00+02:00 »" in reasons[11]
    assert "imaging_source : valeur inconnue « cdrom »" in reasons[12]
    assert "3 champ(s) au lieu de 13" in reasons[13]
    assert reasons[14].startswith("ligne 14 (télédossier E12) : workflow diffère entre les lignes 14 et 15")
    assert "workflow diffère" in reasons[15]
    assert 16 not in reasons and 17 not in reasons
    assert [(w.line, w.dossier_id) for w in parsed.warnings] == [(17, "E13")]
    assert "une autre ligne de ce télédossier est invalide" in reasons[18]  # E14: line 19 is the bad one
    assert "imaging_source : valeur inconnue « bad_source »" in reasons[19]
    assert "FINESS 340780477 : département 30, mais 34 à la ligne 2" in reasons[20]
    assert "dossier_id : champ obligatoire" in reasons[21]
    assert len(reasons) == 17


# ---------------------------------------------------------------------------- importing


def test_import_is_idempotent_and_adds_unknown_establishments(cli, settings, relais, world, tmp_path, capsys):
    path = write(tmp_path, csv_text(newline="\r\n", bom=True))
    assert cli("import-history", path) == 0
    first = summary(capsys.readouterr().out)
    assert first == {"imported": 11, "sends": 12, "events": first["events"], "unchanged": 0, "refused": 0, "added": 3}
    stored = count_events(settings.database_url)
    assert first["events"] > 11 * 3
    # the directory knows Nîmes, Paris and Bordeaux now, by FINESS and department
    for finess, department, region in (C, P, N):
        e = relais.establishment(finess=finess)
        assert (e.department, e.region) == (department, region) and finess in e.name
    # a second run changes nothing
    assert cli("import-history", path) == 0
    second = summary(capsys.readouterr().out)
    assert (second["imported"], second["unchanged"], second["added"]) == (0, 11, 0)
    assert count_events(settings.database_url) == stored
    # the same history with semicolons is the same history
    assert cli("import-history", write(tmp_path, csv_text(delimiter=";"), "fr.csv")) == 0
    assert summary(capsys.readouterr().out)["unchanged"] == 11


def test_imported_dossiers_are_ordinary_events_marked_as_imported(cli, relais, world, tmp_path, capsys):
    assert cli("import-history", write(tmp_path, csv_text())) == 0
    auditor = world["auditor"]
    history = relais.dossier_history(dossier_id=str(legacy_dossier_id("D4")), actor_id=auditor)
    assert [h.event for h in history] == [
        "Created", "RecipientAddressed", "RecipientAddressed", "Sent", "OpinionGiven", "OpinionGiven", "Closed"
    ]
    created = history[0]
    assert created.data["imported_from"]["source"] == "legacy"
    assert created.data["imported_from"]["legacy_id"] == "D4"
    assert created.data["imported_from"]["file"] == "legacy.csv"
    assert created.data["imported_from"]["lines"] == [5, 6]
    assert created.data["patient"] == {}  # no patient data in the legacy file, none invented
    assert {h.actor["role"] for h in history} == {"system"}
    assert history[3].occurred_at == datetime.fromisoformat("2023-02-15T09:00:00+01:00")
    assert history[4].occurred_at == datetime.fromisoformat("2023-02-15T10:00:00+01:00")
    assert all(h.recorded_at.year >= 2026 for h in history)  # recorded now, happened in 2023
    # the requester establishment's clinicians read their imported dossier as any other
    details = relais.get_dossier(dossier_id=str(legacy_dossier_id("D4")), actor_id=world["requester"])
    assert details.state == "closed" and details.imported_from["legacy_id"] == "D4"


def test_valid_rows_are_imported_refused_ones_reported_and_the_exit_code_is_1(cli, tmp_path, capsys):
    content = "\n".join([
        HEADER,
        row("V1", "imaging_transfer", "2023-01-01T10:00:00+01:00", A, B, "dicom_store"),
        row("X1", "imaging_transfer", "2023-01-01T10:00:00", A, B, "dicom_store"),
        row("V2", "stroke_opinion", "2023-01-02T10:00:00+01:00", B, A, "none", "2023-01-02T10:12:00+01:00"),
    ]) + "\n"
    errors = tmp_path / "refus.csv"
    assert cli("import-history", write(tmp_path, content), "--errors", str(errors)) == 1
    captured = capsys.readouterr()
    assert "refusé : ligne 3 (télédossier X1) : created_at : heure sans décalage UTC" in captured.err
    assert summary(captured.out)["imported"] == 2 and summary(captured.out)["refused"] == 1
    assert errors.read_text(encoding="utf-8").splitlines()[1].startswith("3,X1,created_at : heure sans décalage UTC")


def test_a_changed_dossier_is_not_overwritten(cli, tmp_path, capsys):
    assert cli("import-history", write(tmp_path, csv_text(1))) == 0
    changed = csv_text(1).replace("2022-03-10T10:30:00+01:00", "2022-03-10T11:30:00+01:00")
    capsys.readouterr()
    assert cli("import-history", write(tmp_path, changed, "v2.csv")) == 1
    captured = capsys.readouterr()
    assert "ligne 2 (télédossier D1) : télédossier déjà importé avec un autre contenu : non modifié" in captured.err
    assert summary(captured.out)["unchanged"] == 6


def test_a_department_contradicting_the_directory_refuses_the_rows(cli, relais, tmp_path, capsys):
    relais.add_establishment(finess=C[0], name="CHU de Nîmes", department="30")
    content = csv_text(1).replace(f"{C[0]},30,", f"{C[0]},34,")
    assert cli("import-history", write(tmp_path, content)) == 1
    err = capsys.readouterr().err
    assert "FINESS 300780038 : département 34 dans le fichier, 30 dans l'annuaire" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (csv_text().encode("utf-16"), "UTF-16"),
        (csv_text().replace("D1,", "DÉ1,").encode("cp1252"), "n'est pas en utf-8 (octet 0xC9 à la ligne 2)"),
        (b"dossier_id,workflow\n", "colonne(s) manquante(s)"),
        ((HEADER + "\n").encode(), "aucune ligne"),
    ],
)
def test_an_unreadable_file_imports_nothing_and_exits_2(cli, settings, tmp_path, capsys, content, message):
    before = count_events(settings.database_url)
    assert cli("import-history", write(tmp_path, content)) == 2
    err = capsys.readouterr().err
    assert "refusé, rien n'a été importé" in err and message in err
    assert count_events(settings.database_url) == before


def test_windows_1252_is_read_when_named(cli, tmp_path, capsys):
    content = csv_text(1, delimiter=";", newline="\r\n").replace("D1;", "DÉ1;").encode("cp1252")
    assert cli("import-history", write(tmp_path, content), "--encoding", "cp1252") == 0
    assert summary(capsys.readouterr().out)["imported"] == 7


def test_a_dry_run_writes_nothing(cli, settings, tmp_path, capsys):
    before = count_events(settings.database_url)
    assert cli("import-history", write(tmp_path, csv_text()), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "seraient importés : 11 télédossiers" in out and "établissements à ajouter à l'annuaire : 5" in out
    assert count_events(settings.database_url) == before


# ---------------------------------------------------------------------------- stats export


def test_stats_export_json_csv_and_filters(cli, relais, world, tmp_path, capsys):
    assert cli("import-history", write(tmp_path, csv_text())) == 0
    capsys.readouterr()
    assert cli("stats", "export", "--from", "2022-01-01", "--to", "2024-05-31") == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == [
        "period", "filters", "totals", "dossiers_by_year", "dossiers_by_workflow_year", "sends_by_department",
        "imaging_source_by_establishment", "inter_regional", "answer_delay", "acceptance", "deadlines",
    ]
    assert report["period"] == {"from": "2022-01-01", "to": "2024-05-31", "timezone": "Europe/Paris"}
    assert set(report["dossiers_by_year"][0]) == {"year", "dossiers", "compared_to", "variation_pct"}
    assert set(report["dossiers_by_year"][0]["compared_to"]) == {"from", "to", "dossiers"}
    assert set(report["dossiers_by_workflow_year"][0]) == {"workflow", "year", "dossiers", "variation_pct", "share_pct"}
    assert set(report["sends_by_department"]) == {"requester", "recipient"}
    assert set(report["sends_by_department"]["requester"][0]) == {"department", "sends"}
    assert set(report["imaging_source_by_establishment"][0]) == {"finess", "imaging_source", "dossiers", "share_pct"}
    assert set(report["inter_regional"][0]) == {"channel", "region", "sends"}
    assert set(report["answer_delay"][0]) == {"workflow", "year", "answered", "median_minutes", "p90_minutes"}
    assert [y["dossiers"] for y in report["dossiers_by_year"]] == [2, 5, 3]  # no live dossiers here

    assert cli("stats", "export", "--from", "2022-01-01", "--to", "2024-05-31", "--format", "csv") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "table,year,workflow,department,finess,imaging_source,channel,region,measure,value"
    assert "dossiers_by_year,2023,,,,,,,dossiers,5" in lines

    assert cli("stats", "export", "--from", "2024-01-01", "--to", "2024-05-31", "--format", "csv",
               "--table", "dossiers_by_year", "--establishment", "310781406", "--side", "requester") == 0
    assert capsys.readouterr().out.splitlines()[1] == "2024,2,2023-01-01,2023-05-31,1,100"

    assert cli("stats", "export", "--to", "2024-05-31", "--as-of", "2020-01-01") == 0
    assert json.loads(capsys.readouterr().out)["totals"] == {"dossiers": 0, "sends": 0}

    assert cli("stats", "export", "--establishment", "310781407") == 2
    assert "clé de contrôle" in capsys.readouterr().err
    assert cli("stats", "export", "--establishment", "130780000") == 2
    assert "inconnu" in capsys.readouterr().err
    assert cli("stats", "export", "--from", "2024-06-01", "--to", "2024-05-31") == 2
    assert "période vide" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli("stats", "export", "--from", "31/05/2024")


def test_import_then_status_shows_the_statistics_lag(cli, tmp_path, capsys):
    assert cli("import-history", write(tmp_path, csv_text())) == 0
    capsys.readouterr()
    assert cli("projections", "status", "--json") == 0
    stats = next(p for p in json.loads(capsys.readouterr().out) if p["name"] == "statistics")
    assert stats["lag"] > 0 and stats["position"] == 0
    assert cli("projections", "rebuild", "statistics") == 0
    assert "statistics reconstruite" in capsys.readouterr().out
    assert cli("projections", "status", "--json") == 0
    stats = next(p for p in json.loads(capsys.readouterr().out) if p["name"] == "statistics")
    assert stats["lag"] == 0 and stats["position"] == stats["head"]


def test_new_commands_have_help(capsys):
    from entrypoints.cli.main import build_parser

    for words in (["import-history"], ["stats", "export"]):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([*words, "--help"])
        assert exit_.value.code == 0
        assert "usage: relais " + " ".join(words) in capsys.readouterr().out


# ---------------------------------------------------------------------------- identical rows, send_id, recipient_service


def stats_totals(cli, capsys, year: int) -> dict:
    assert cli("stats", "export", "--from", f"{year}-01-01", "--to", f"{year}-12-31") == 0
    return json.loads(capsys.readouterr().out)["totals"]


def test_identical_rows_are_sends_reported_as_a_warning_and_counted(cli, settings, relais, world, tmp_path, capsys):
    """A legacy export has no service column: a dossier sent to two services of one establishment at
    the same minute is two identical rows, two sends in the legacy platform's own counts."""
    twice = row("S1", "imaging_transfer", "2023-03-01T10:00:00+01:00", A, B, "dicom_store", "2023-03-01T11:00:00+01:00")
    content = "\n".join([
        HEADER, twice, twice, twice,
        row("S2", "stroke_opinion", "2023-03-02T10:00:00+01:00", B, A, "none"),
    ]) + "\n"
    path = write(tmp_path, content)
    assert cli("import-history", path) == 0
    captured = capsys.readouterr()
    first = summary(captured.out)
    assert (first["imported"], first["sends"], first["refused"]) == (2, 4, 0)
    assert "attention : ligne 3 (télédossier S1) : ligne identique à la ligne 2" in captured.err
    assert "attention : ligne 4 (télédossier S1) : ligne identique à la ligne 2" in captured.err
    assert "lignes identiques : 2" in captured.out
    history = relais.dossier_history(dossier_id=str(legacy_dossier_id("S1")), actor_id=world["auditor"])
    assert [h.event for h in history].count("RecipientAddressed") == 3
    assert [h.event for h in history].count("OpinionGiven") == 3
    assert stats_totals(cli, capsys, 2023) == {"dossiers": 2, "sends": 4}
    # a second run doubles nothing
    stored = count_events(settings.database_url)
    assert cli("import-history", path) == 0
    second = summary(capsys.readouterr().out)
    assert (second["imported"], second["unchanged"]) == (0, 2)
    assert count_events(settings.database_url) == stored
    assert stats_totals(cli, capsys, 2023) == {"dossiers": 2, "sends": 4}


def test_send_ids_do_not_depend_on_the_order_of_the_rows(relais, world):
    rows = [
        row("O1", "imaging_transfer", "2023-03-01T10:00:00+01:00", A, B, "dicom_store", "2023-03-01T11:00:00+01:00"),
        row("O1", "imaging_transfer", "2023-03-01T10:00:00+01:00", A, B, "dicom_store"),
        row("O1", "imaging_transfer", "2023-03-01T10:00:00+01:00", A, C, "dicom_store"),
    ]

    def send_ids(lines: list[str]) -> set[str]:
        (d,) = parse_legacy_text("\n".join([HEADER, *lines]) + "\n").dossiers
        return set(relais.legacy_dossier(d).sends)

    assert send_ids(rows) == send_ids(list(reversed(rows)))


OPTIONAL_HEADER = HEADER + ",send_id,recipient_service"


def test_send_id_and_recipient_service_make_rows_unambiguous(cli, relais, world, tmp_path, capsys):
    sent, answered = "2023-03-01T10:00:00+01:00", "2023-03-01T11:00:00+01:00"
    content = "\n".join([
        OPTIONAL_HEADER,
        # the same send listed twice: one send
        row("X1", "imaging_transfer", sent, A, B, "dicom_store", answered) + ",L-1,",
        row("X1", "imaging_transfer", sent, A, B, "dicom_store", answered) + ",L-1,",
        # one send_id, two different sends: a conflict, the dossier is refused
        row("X2", "imaging_transfer", sent, A, B, "dicom_store", answered) + ",L-2,",
        row("X2", "imaging_transfer", sent, A, B, "dicom_store") + ",L-2,",
        # two services of one establishment at the same minute: two sends, nothing to warn about
        row("X3", "imaging_transfer", sent, A, B, "dicom_store") + ",,Neuroradiologie",
        row("X3", "imaging_transfer", sent, A, B, "dicom_store") + ",,Cardiologie",
        # a legacy send id belongs to one dossier
        row("X4", "imaging_transfer", sent, A, B, "dicom_store") + ",L-1,",
    ]) + "\n"
    parsed = parse_legacy_text(content)
    assert not parsed.extra_columns
    by_id = {d.legacy_id: d for d in parsed.dossiers}
    assert sorted(by_id) == ["X1", "X3"]
    assert len(by_id["X1"].sends) == 1 and by_id["X1"].sends[0].send_id == "L-1"
    assert sorted(s.service for s in by_id["X3"].sends) == ["Cardiologie", "Neuroradiologie"]
    reasons = {e.line: e.reason for e in parsed.errors}
    assert "send_id : « L-2 » décrit deux envois différents (lignes 4 et 5)" in reasons[4]
    assert 4 in reasons and 5 in reasons
    assert "send_id : « L-1 » est déjà celui du télédossier X1 (ligne 2)" in reasons[8]
    assert [(w.line, w.reason) for w in parsed.warnings] == [(3, "même send_id « L-1 » que la ligne 2 : un seul envoi")]

    assert cli("import-history", write(tmp_path, content)) == 1
    out = summary(capsys.readouterr().out)
    assert (out["imported"], out["sends"]) == (2, 3)
    history = relais.dossier_history(dossier_id=str(legacy_dossier_id("X3")), actor_id=world["auditor"])
    legacy = sorted(h.data["recipient"]["legacy"]["service"] for h in history if h.event == "RecipientAddressed")
    assert legacy == ["Cardiologie", "Neuroradiologie"]


def test_empty_optional_columns_are_the_same_history(cli, tmp_path, capsys):
    """A file that adds the optional columns, left empty, says the same thing: nothing is refused
    as changed on the next import (the digests of earlier imports still match)."""
    assert cli("import-history", write(tmp_path, csv_text())) == 0
    capsys.readouterr()
    widened = "\n".join(line + ",," if n else OPTIONAL_HEADER for n, line in enumerate(csv_text().splitlines())) + "\n"
    assert cli("import-history", write(tmp_path, widened, "widened.csv")) == 0
    assert summary(capsys.readouterr().out)["unchanged"] == 11


# ---------------------------------------------------------------------------- hostile cells


def test_the_refusals_file_never_holds_a_formula(cli, tmp_path, capsys):
    """`--errors refusés.csv` is opened in a spreadsheet: a refused cell must not run there."""
    hostile = ["=1+2", "@SUM(A1:A9)", "-2+3", "+33 1 23", "\t=1", "＝1+2"]
    content = "\n".join(
        [HEADER] + [row(h, "teleconsultation", "2023-01-01T10:00:00+01:00", A, B, "dicom_store") for h in hostile]
    ) + "\n"
    errors = tmp_path / "refus.csv"
    assert cli("import-history", write(tmp_path, content), "--errors", str(errors)) == 1
    capsys.readouterr()
    with errors.open(encoding="utf-8", newline="") as f:
        cells = [cell for line in list(csv.reader(f))[1:] for cell in line]
    assert cells, "nothing refused"
    for cell in cells:
        assert not cell.lstrip(" ").startswith(("=", "+", "-", "@", "\t", "\r", "＝")), cell
    assert {"'=1+2", "'@SUM(A1:A9)", "'-2+3"} <= set(cells)


def quoted_row(dossier: str, **changes: str) -> str:
    """A valid row (A → B) with some fields replaced, every field quoted (values may hold line breaks)."""
    values = dict(zip(HEADER.split(","), row(dossier, "imaging_transfer", "2023-01-01T10:00:00+01:00", A, B, "dicom_store").split(","),
                      strict=True))
    values.update(changes)
    return ",".join('"' + v.replace('"', '""') + '"' for v in values.values())


def test_a_dossier_id_is_an_identifier(cli, tmp_path, capsys):
    forged = "D1\nrefusé : ligne 999 (télédossier D0) : faux"
    hostile = [forged, "=1+2", "@SUM(A1:A9)", "-2+3", "D\u202e2", "D\x1b[31m3", "D\t4", "x" * 65]
    content = "\n".join([HEADER, *(quoted_row(h) for h in hostile), quoted_row("OK-1")]) + "\n"
    parsed = parse_legacy_text(content)
    assert [d.legacy_id for d in parsed.dossiers] == ["OK-1"]
    assert all(e.reason.startswith("dossier_id : ") for e in parsed.errors), parsed.errors
    assert len(parsed.errors) == len(hostile)

    assert cli("import-history", write(tmp_path, content)) == 1
    err = capsys.readouterr().err.splitlines()
    refusals = [line for line in err if line.startswith("refusé : ")]
    assert len(refusals) == len(hostile) and len(err) == len(hostile)  # one line per refused row, no forged one
    assert not any(line.startswith("refusé : ligne 999") for line in err)
    assert any("(télédossier D1\\nrefusé : ligne 999" in line for line in err)
    assert any("(télédossier D\\u202e2)" in line for line in err)


def test_every_value_echoed_has_its_control_characters_escaped(cli, tmp_path, capsys):
    header = HEADER + ',"note\nrefusé : ligne 999 : faux"'
    content = "\n".join([
        header,
        quoted_row("W1", workflow="bad\r\nrefusé : ligne 998 : faux") + ',""',
        quoted_row("W2", sent_at="2023\x1b[2J") + ',""',
    ]) + "\n"
    errors = tmp_path / "refus.csv"
    assert cli("import-history", write(tmp_path, content), "--errors", str(errors)) == 1
    err = capsys.readouterr().err.splitlines()
    assert not any(line.startswith("refusé : ligne 99") for line in err), err
    assert "colonnes ignorées : note\\nrefusé : ligne 999 : faux" in err
    assert any("« bad\\r\\nrefusé : ligne 998 : faux »" in line for line in err)
    assert any("« 2023\\x1b[2J »" in line for line in err)
    assert not any("\x1b" in line for line in err)
    # the refusals file: one record per line, the same escaped text
    assert len(errors.read_text(encoding="utf-8").splitlines()) == 3


def test_a_refusal_echoes_at_most_80_characters_of_a_value(cli, tmp_path, capsys):
    huge = "9" * 100_000
    header = HEADER + "," + "c" * 100_000
    content = "\n".join([
        header,
        quoted_row("L" + huge) + ",x",
        *(quoted_row(f"L{n}", **{column: huge}) + ",x" for n, column in enumerate(
            ("workflow", "created_at", "sent_at", "requester_finess", "recipient_department", "recipient_region",
             "imaging_source", "inter_regional_channel", "answered_at"))),
        quoted_row("L99") + "," + huge,  # an ignored column is never echoed
    ]) + "\n"
    errors = tmp_path / "refus.csv"
    assert cli("import-history", write(tmp_path, content), "--errors", str(errors)) == 1
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len([line for line in err if line.startswith("refusé : ")]) == 10
    for line in [*err, *captured.out.splitlines(), *errors.read_text(encoding="utf-8").splitlines()]:
        assert len(line) < 300, line[:300]
        assert "9" * 81 not in line and "c" * 81 not in line
    assert any("(télédossier L" + "9" * 79 + "… (100001 caractères))" in line for line in err)  # the id, cut


def test_send_id_is_an_identifier_and_recipient_service_a_one_line_label():
    sent = "2023-03-01T10:00:00+01:00"
    content = "\n".join([
        OPTIONAL_HEADER,
        row("Y1", "imaging_transfer", sent, A, B, "dicom_store") + ",=1+2,",
        row("Y2", "imaging_transfer", sent, A, B, "dicom_store") + ',,"Neuro\nradiologie"',
    ]) + "\n"
    parsed = parse_legacy_text(content)
    assert not parsed.dossiers
    reasons = [str(e) for e in parsed.errors]
    assert "send_id : identifiant commençant comme une formule de tableur « =1+2 »" in reasons[0]
    assert "recipient_service : caractère de contrôle ou saut de ligne « Neuro\\nradiologie »" in reasons[1]
