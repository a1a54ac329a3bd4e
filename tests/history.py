"""A reduced history with known answers: legacy CSV rows and live dossiers (statistics tests).

Establishments: A Toulouse (31), B Montpellier (34) — the `world` fixture's two CHUs —, C Nîmes
(30), P Paris (75, IDF), N Bordeaux (33, NA). Dates are chosen on the edges: D3 is sent at
23:30 UTC on 31 December 2022, already 1 January 2023 in Paris; D9 at 23:30 Paris on 31 May
2024 (inside a period ending that day); D10 at 00:30 Paris on 1 June 2024 (outside).
"""

from __future__ import annotations

from datetime import datetime

from application import Relais
from tests.conftest import PATIENT

HEADER = (
    "dossier_id,workflow,created_at,sent_at,requester_finess,requester_department,recipient_finess,"
    "recipient_department,recipient_region,imaging_source,inter_regional_channel,answered_at,closed_at"
)
A, B, C, P, N = (
    ("310781406", "31", "OCC"), ("340780477", "34", "OCC"), ("300780038", "30", "OCC"),
    ("750100018", "75", "IDF"), ("330780008", "33", "NA"),
)


def row(
    dossier: str, workflow: str, sent: str, requester: tuple, recipient: tuple, source: str,
    answered: str = "", channel: str = "", created: str = "", closed: str = "",
) -> str:
    return ",".join([
        dossier, workflow, created or sent, sent, requester[0], requester[1], recipient[0], recipient[1],
        recipient[2], source, channel, answered, closed,
    ])


# (phase, row): phase 1 is imported first, phase 2 later (see the as-of test).
ROWS = [
    (1, row("D1", "imaging_transfer", "2022-03-10T10:00:00+01:00", A, B, "dicom_store", "2022-03-10T10:30:00+01:00")),
    (1, row("D2", "emergency_opinion", "2022-06-01T08:00:00+02:00", A, B, "pacs_retrieve", "2022-06-01T09:30:00+02:00")),
    (1, row("D3", "imaging_transfer", "2022-12-31T23:30:00Z", C, A, "file_import", created="2022-12-31T23:00:00Z")),
    (1, row("D4", "imaging_transfer", "2023-02-15T09:00:00+01:00", A, B, "dicom_store", "2023-02-15T10:00:00+01:00",
            closed="2023-02-16T09:00:00+01:00")),
    (1, row("D4", "imaging_transfer", "2023-02-15T09:00:00+01:00", A, P, "dicom_store", "2023-02-15T11:00:00+01:00",
            channel="national_network", closed="2023-02-16T09:00:00+01:00")),
    (1, row("D5", "stroke_opinion", "2023-04-01T12:00:00+02:00", B, A, "dicom_store", "2023-04-01T12:15:00+02:00")),
    (1, row("D6", "imaging_transfer", "2023-07-01T10:00:00+02:00", A, N, "dicom_store", channel="attached_professional")),
    (1, row("D7", "emergency_opinion", "2023-05-20T14:00:00+02:00", C, B, "none", "2023-05-20T14:45:00+02:00")),
    (2, row("D8", "imaging_transfer", "2024-01-10T10:00:00+01:00", A, B, "dicom_store", "2024-01-10T10:20:00+01:00")),
    (2, row("D9", "imaging_transfer", "2024-05-31T21:30:00Z", A, B, "dicom_store", "2024-05-31T22:10:00Z")),
    (2, row("D10", "imaging_transfer", "2024-05-31T22:30:00Z", A, B, "dicom_store", "2024-05-31T22:35:00Z")),
    (2, row("D11", "stroke_opinion", "2024-03-03T03:00:00+01:00", B, A, "none", "2024-03-03T03:10:00+01:00")),
]


def csv_text(phase: int | None = None, *, newline: str = "\n", delimiter: str = ",", bom: bool = False) -> str:
    lines = [HEADER] + [r for p, r in ROWS if phase is None or p == phase]
    text = newline.join(line.replace(",", delimiter) for line in lines) + newline
    return ("\ufeff" if bom else "") + text


def t(value: str) -> datetime:
    return datetime.fromisoformat(value)


def live_dossiers(relais: Relais, world: dict, *, answer: bool = True) -> dict:
    """L1: stroke, sent 1 Sept 2023, declined after 5 min. L2: generic opinion, sent 1 Oct 2023,
    accepted after 10 min, answered after 70 min (unless `answer` is False)."""
    req, rcp = world["requester"], world["recipient"]
    out = {}
    legacy = (("L1", "stroke_opinion", "2023-09-01T10:00:00+02:00"), ("L2", "generic_opinion", "2023-10-01T10:00:00+02:00"))
    for name, workflow, sent in legacy:
        did = relais.create_dossier(
            actor_id=req, workflow=workflow, question="Avis ?", urgency="urgent", consent="given", occurred_at=t(sent), **PATIENT
        )
        sid = relais.address_recipient(
            dossier_id=did, actor_id=req, establishment_id=world["montpellier"], service_id=world["neuro"], occurred_at=t(sent)
        )
        relais.send_dossier(dossier_id=did, actor_id=req, occurred_at=t(sent))
        out[name] = (did, sid)
    did, sid = out["L1"]
    relais.decline(dossier_id=did, actor_id=rcp, send_id=sid, reason_code="not_competent", occurred_at=t("2023-09-01T10:05:00+02:00"))
    did, sid = out["L2"]
    relais.accept(dossier_id=did, actor_id=rcp, send_id=sid, occurred_at=t("2023-10-01T10:10:00+02:00"))
    if answer:
        answer_l2(relais, world, out)
    return out


def answer_l2(relais: Relais, world: dict, live: dict) -> None:
    did, sid = live["L2"]
    relais.give_opinion(
        dossier_id=did, actor_id=world["recipient"], send_id=sid, report="Pas d'indication chirurgicale.",
        occurred_at=t("2023-10-01T11:10:00+02:00"),
    )


EXPECTED = {
    "period": {"from": "2022-01-01", "to": "2024-05-31", "timezone": "Europe/Paris"},
    "dossiers_by_year": [
        {"year": 2022, "dossiers": 2, "compared_to": {"from": "2021-01-01", "to": "2021-12-31", "dossiers": 0},
         "variation_pct": None},
        {"year": 2023, "dossiers": 7, "compared_to": {"from": "2022-01-01", "to": "2022-12-31", "dossiers": 2},
         "variation_pct": 250.0},
        {"year": 2024, "dossiers": 3, "compared_to": {"from": "2023-01-01", "to": "2023-05-31", "dossiers": 4},
         "variation_pct": -25.0},
    ],
    "dossiers_by_workflow_year": [
        {"workflow": "imaging_transfer", "year": 2022, "dossiers": 1, "variation_pct": None, "share_pct": 50.0},
        {"workflow": "emergency_opinion", "year": 2022, "dossiers": 1, "variation_pct": None, "share_pct": 50.0},
        {"workflow": "imaging_transfer", "year": 2023, "dossiers": 3, "variation_pct": 200.0, "share_pct": 42.86},
        {"workflow": "emergency_opinion", "year": 2023, "dossiers": 1, "variation_pct": 0.0, "share_pct": 14.29},
        {"workflow": "stroke_opinion", "year": 2023, "dossiers": 2, "variation_pct": None, "share_pct": 28.57},
        {"workflow": "generic_opinion", "year": 2023, "dossiers": 1, "variation_pct": None, "share_pct": 14.29},
        {"workflow": "imaging_transfer", "year": 2024, "dossiers": 2, "variation_pct": 0.0, "share_pct": 66.67},
        {"workflow": "emergency_opinion", "year": 2024, "dossiers": 0, "variation_pct": -100.0, "share_pct": 0.0},
        {"workflow": "stroke_opinion", "year": 2024, "dossiers": 1, "variation_pct": 0.0, "share_pct": 33.33},
    ],
    "sends_by_department": {
        "requester": [{"department": "31", "sends": 9}, {"department": "30", "sends": 2}, {"department": "34", "sends": 2}],
        "recipient": [
            {"department": "34", "sends": 8}, {"department": "31", "sends": 3},
            {"department": "33", "sends": 1}, {"department": "75", "sends": 1},
        ],
    },
    "imaging_source_by_establishment": [
        {"finess": "300780038", "imaging_source": "file_import", "dossiers": 1, "share_pct": 50.0},
        {"finess": "300780038", "imaging_source": "none", "dossiers": 1, "share_pct": 50.0},
        {"finess": "310781406", "imaging_source": "dicom_store", "dossiers": 5, "share_pct": 62.5},
        {"finess": "310781406", "imaging_source": "pacs_retrieve", "dossiers": 1, "share_pct": 12.5},
        {"finess": "310781406", "imaging_source": "none", "dossiers": 2, "share_pct": 25.0},
        {"finess": "340780477", "imaging_source": "dicom_store", "dossiers": 1, "share_pct": 50.0},
        {"finess": "340780477", "imaging_source": "none", "dossiers": 1, "share_pct": 50.0},
    ],
    "inter_regional": [
        {"channel": "attached_professional", "region": "NA", "sends": 1},
        {"channel": "national_network", "region": "IDF", "sends": 1},
    ],
    "answer_delay": [
        {"workflow": "imaging_transfer", "year": 2022, "answered": 1, "median_minutes": 30.0, "p90_minutes": 30.0},
        {"workflow": "emergency_opinion", "year": 2022, "answered": 1, "median_minutes": 90.0, "p90_minutes": 90.0},
        {"workflow": "imaging_transfer", "year": 2023, "answered": 1, "median_minutes": 60.0, "p90_minutes": 60.0},
        {"workflow": "emergency_opinion", "year": 2023, "answered": 1, "median_minutes": 45.0, "p90_minutes": 45.0},
        {"workflow": "stroke_opinion", "year": 2023, "answered": 1, "median_minutes": 15.0, "p90_minutes": 15.0},
        {"workflow": "generic_opinion", "year": 2023, "answered": 1, "median_minutes": 70.0, "p90_minutes": 70.0},
        {"workflow": "imaging_transfer", "year": 2024, "answered": 2, "median_minutes": 30.0, "p90_minutes": 38.0},
        {"workflow": "stroke_opinion", "year": 2024, "answered": 1, "median_minutes": 10.0, "p90_minutes": 10.0},
    ],
    "acceptance": [
        {"workflow": "imaging_transfer", "year": 2022, "sends": 1, "accepted": 1, "declined": 0, "answered": 1, "declined_pct": 0.0},
        {"workflow": "emergency_opinion", "year": 2022, "sends": 1, "accepted": 1, "declined": 0, "answered": 1, "declined_pct": 0.0},
        {"workflow": "imaging_transfer", "year": 2023, "sends": 4, "accepted": 2, "declined": 0, "answered": 2, "declined_pct": 0.0},
        {"workflow": "emergency_opinion", "year": 2023, "sends": 1, "accepted": 1, "declined": 0, "answered": 1, "declined_pct": 0.0},
        {"workflow": "stroke_opinion", "year": 2023, "sends": 2, "accepted": 1, "declined": 1, "answered": 1, "declined_pct": 50.0},
        {"workflow": "generic_opinion", "year": 2023, "sends": 1, "accepted": 1, "declined": 0, "answered": 1, "declined_pct": 0.0},
        {"workflow": "imaging_transfer", "year": 2024, "sends": 2, "accepted": 2, "declined": 0, "answered": 2, "declined_pct": 0.0},
        {"workflow": "stroke_opinion", "year": 2024, "sends": 1, "accepted": 1, "declined": 0, "answered": 1, "declined_pct": 0.0},
    ],
}
