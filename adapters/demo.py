"""Demo directory and dossiers in various states, for `relais up --demo` (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict

from adapters.credentials import Credentials
from application import Relais
from application.directory import EstablishmentInfo
from application.errors import AlreadyExistsError
from domain.identifiers import luhn_key
from domain.values import PARIS

DEMO_PASSWORD = "relais-demo-2026"


def _finess(prefix8: str) -> str:
    return prefix8 + luhn_key(prefix8)


def _rpps(n: int) -> str:
    body = f"1{n:09d}"
    return body + luhn_key(body)


ESTABLISHMENTS = [
    # (finess, name, department, region)
    ("310781406", "CHU de Toulouse", "31", None),
    ("340780477", "CHU de Montpellier", "34", None),
    ("300780038", "CHU de Nîmes", "30", None),
    (_finess("12078001"), "Centre hospitalier de Rodez", "12", None),
    (_finess("66078001"), "Centre hospitalier de Perpignan", "66", None),
    (_finess("31000099"), "GIP e-santé Occitanie (opérateur)", "31", None),
    (_finess("75010001"), "Hôpital Lariboisière (AP-HP)", "75", None),
]

SERVICES = [
    # (finess, code, name, specialty, kind)
    ("310781406", "neuroradio", "Neuroradiologie interventionnelle", "radiologie", "service"),
    ("310781406", "unv", "Unité neurovasculaire — astreinte", "neurologie", "on_call_pool"),
    ("310781406", "nephro-greffe", "Néphrologie et transplantation", "néphrologie", "team"),
    ("310781406", "astreinte-nrx", "Astreinte de neuroradiologie", "radiologie", "on_call_pool"),
    ("340780477", "neurochirurgie", "Neurochirurgie", "neurochirurgie", "service"),
    ("340780477", "astreinte-urgences", "Astreinte régionale d'avis urgents", "médecine d'urgence", "on_call_pool"),
    (ESTABLISHMENTS[3][0], "urgences", "Urgences", "médecine d'urgence", "service"),
]


@dataclass(frozen=True)
class DemoUser:
    rpps: str
    family_name: str
    given_name: str
    finess: str
    roles: tuple[str, ...]
    services: tuple[str, ...]
    label: str


USERS = [
    DemoUser(_rpps(101), "Martin", "Claire", ESTABLISHMENTS[3][0], ("clinician",), ("urgences",), "urgentiste requérante (CH Rodez)"),
    DemoUser(_rpps(102), "Durand", "Paul", "310781406", ("clinician",), ("neuroradio",), "neuroradiologue requis (CHU Toulouse)"),
    DemoUser(_rpps(103), "Bernard", "Sophie", "310781406", ("clinician",), ("nephro-greffe", "unv", "astreinte-nrx"),
             "néphrologue / astreintes UNV et neuroradio (CHU Toulouse)"),
    DemoUser(_rpps(104), "Petit", "Luc", "340780477", ("clinician",), ("neurochirurgie", "astreinte-urgences"),
             "neurochirurgien / astreinte d'avis urgents (CHU Montpellier)"),
    DemoUser(_rpps(105), "Leroy", "Anne", "310781406", ("auditor",), (), "auditrice — DIM (CHU Toulouse)"),
    DemoUser(_rpps(106), "Moreau", "Marc", ESTABLISHMENTS[5][0], ("analyst",), (), "analyste régional"),
    DemoUser(_rpps(107), "Roux", "Julie", ESTABLISHMENTS[5][0], ("admin",), (), "administratrice de la plateforme"),
]

# The recipient preset on the compose page, per requester establishment and workflow: the region's
# neurovascular on-call pool (« AVC » finds it) and its on-call pool for emergency opinions.
DEFAULT_RECIPIENTS = [
    # (requester finess, workflow, recipient finess, service code)
    (ESTABLISHMENTS[3][0], "stroke_opinion", "310781406", "unv"),
    (ESTABLISHMENTS[3][0], "emergency_opinion", "340780477", "astreinte-urgences"),
    (ESTABLISHMENTS[4][0], "stroke_opinion", "310781406", "unv"),
    (ESTABLISHMENTS[4][0], "emergency_opinion", "340780477", "astreinte-urgences"),
]

NODES = [
    ("RODEZ_GW", "127.0.0.1", 11113, ESTABLISHMENTS[3][0], "gateway"),
    ("TLSE_PACS", "127.0.0.1", 4242, "310781406", "pacs"),
]


def load(relais: Relais, credentials: Credentials, now: datetime) -> list[DemoUser]:
    """Loads the demo once; later calls only make sure the demo passwords are set."""
    first_time = True
    for finess, name, dep, region in ESTABLISHMENTS:
        try:
            relais.add_establishment(finess=finess, name=name, department=dep, region=region)
        except AlreadyExistsError:
            first_time = False
    est = {f: relais.establishment(finess=f) for f, *_ in ESTABLISHMENTS}
    svc: dict[tuple[str, str], str] = {}
    for finess, code, name, specialty, kind in SERVICES:
        existing = {s["code"]: s["service_id"] for s in relais.establishment(finess=finess).services}
        svc[(finess, code)] = existing.get(code) or relais.add_service(
            establishment_id=est[finess].id, code=code, name=name, specialty=specialty, kind=kind
        )
    ids: dict[str, str] = {}
    for u in USERS:
        try:
            ids[u.rpps] = relais.add_practitioner(
                rpps=u.rpps, family_name=u.family_name, given_name=u.given_name, establishment_id=est[u.finess].id,
                roles=list(u.roles), service_ids=[svc[(u.finess, c)] for c in u.services],
                email=f"{u.given_name.lower()}.{u.family_name.lower()}@demo.relais.invalid",
            )
        except AlreadyExistsError:
            ids[u.rpps] = relais.practitioner(rpps=u.rpps).id
            # a demo made before a pool was added: its members join it (nothing recorded when unchanged)
            relais.set_membership(practitioner_id=ids[u.rpps], establishment_id=est[u.finess].id, roles=list(u.roles),
                                  service_ids=[svc[(u.finess, c)] for c in u.services])
        if not credentials.has_password(ids[u.rpps]):
            credentials.set_password(ids[u.rpps], DEMO_PASSWORD)
    for finess, workflow, to, service in DEFAULT_RECIPIENTS:
        if relais.default_recipient(est[finess].id, workflow) is None:  # one changed since is kept
            relais.set_default_recipient(establishment_id=est[finess].id, workflow=workflow,
                                         to_establishment_id=est[to].id, to_service_code=service)
    for aet, host, port, finess, kind in NODES:
        try:
            relais.add_node(aet=aet, host=host, port=port, establishment_id=est[finess].id, kind=kind)
        except AlreadyExistsError:
            pass
    if first_time:
        # sends to neuroradiology not taken in charge in time go to its on-call pool as well
        relais.set_service_escalation(establishment_id=est["310781406"].id, service_code="neuroradio",
                                      to_service_code="astreinte-nrx")
        _dossiers(relais, est, svc, ids, now)
    return USERS


class DemoPatient(TypedDict):
    """The patient arguments of `Relais.create_dossier` for one demo patient."""

    patient_birth_name: str
    patient_first_names: str
    patient_birth_date: str
    patient_sex: str
    patient_birth_place_code: str


def _dossiers(
    relais: Relais, est: dict[str, EstablishmentInfo], svc: dict[tuple[str, str], str], ids: dict[str, str], now: datetime,
) -> None:
    tlse, mtp, paris = "310781406", "340780477", ESTABLISHMENTS[6][0]
    martin, durand, bernard, petit = (ids[u.rpps] for u in USERS[:4])
    patients = [
        DemoPatient(patient_birth_name="Dupont", patient_first_names="Jeanne Marie", patient_birth_date="1948-03-02",
                    patient_sex="F", patient_birth_place_code="12202"),
        DemoPatient(patient_birth_name="Garcia", patient_first_names="Antoine", patient_birth_date="1971-11-19",
                    patient_sex="M", patient_birth_place_code="31555"),
        DemoPatient(patient_birth_name="Lefebvre", patient_first_names="Inès", patient_birth_date="1990-06-30",
                    patient_sex="F", patient_birth_place_code="66136"),
        DemoPatient(patient_birth_name="Nguyen", patient_first_names="Thi Lan", patient_birth_date="1962-01-08",
                    patient_sex="F", patient_birth_place_code="99243"),
        DemoPatient(patient_birth_name="Roche", patient_first_names="Gérard", patient_birth_date="1955-09-14",
                    patient_sex="M", patient_birth_place_code="12145"),
        DemoPatient(patient_birth_name="Fabre", patient_first_names="Lucie", patient_birth_date="2001-04-22",
                    patient_sex="F", patient_birth_place_code="34172"),
    ]

    def at(hours_ago: float) -> datetime:
        return now - timedelta(hours=hours_ago)

    def new(patient: DemoPatient, workflow: str, question: str, urgency: str, hours_ago: float, to: str, service: str | None,
            channel: str | None = None) -> tuple[str, str]:
        did = relais.create_dossier(
            actor_id=martin, workflow=workflow, question=question, urgency=urgency, consent="given",
            imaging_source="dicom_store" if workflow != "generic_opinion" else "none",
            occurred_at=at(hours_ago), **patient,
        )
        sid = relais.address_recipient(
            dossier_id=did, actor_id=martin, establishment_id=est[to].id,
            service_id=svc.get((to, service)) if service else None, channel=channel, occurred_at=at(hours_ago - 0.05),
        )
        return did, sid

    # 1. a draft, not sent yet
    new(patients[0], "emergency_opinion", "Traumatisme crânien sous anticoagulant : avis neurochirurgical ?", "urgent",
        0.5, mtp, "neurochirurgie")
    # 2. sent, waiting for the stroke on-call team
    did, sid = new(patients[1], "stroke_opinion", "Hémiplégie droite depuis 1 h 10, NIHSS 14. Thrombectomie ?", "stat",
                   0.3, tlse, "unv")
    relais.send_dossier(dossier_id=did, actor_id=martin, occurred_at=at(0.25))
    # 3. accepted, in progress
    did, sid = new(patients[2], "imaging_transfer", "Transfert d'imagerie pour avis sur lésion hépatique.", "routine",
                   30, tlse, "neuroradio")
    relais.send_dossier(dossier_id=did, actor_id=martin, occurred_at=at(29.9))
    relais.accept(dossier_id=did, actor_id=durand, send_id=sid, occurred_at=at(26))
    # 4. complement requested
    did, sid = new(patients[3], "kidney_transplant_mdt", "Dossier pré-greffe rénale pour RCP.", "routine",
                   72, tlse, "nephro-greffe")
    relais.send_dossier(dossier_id=did, actor_id=martin, occurred_at=at(71.9))
    relais.accept(dossier_id=did, actor_id=bernard, send_id=sid, occurred_at=at(50))
    relais.request_complement(dossier_id=did, actor_id=bernard, send_id=sid,
                              message="Merci de joindre le dernier bilan HLA.", occurred_at=at(49))
    # 5. answered then closed
    did, sid = new(patients[4], "imaging_transfer", "Scanner cérébral : avis sur hématome sous-dural.", "urgent",
                   120, tlse, "neuroradio")
    relais.send_dossier(dossier_id=did, actor_id=martin, occurred_at=at(119.9))
    relais.accept(dossier_id=did, actor_id=durand, send_id=sid, occurred_at=at(119))
    relais.give_opinion(dossier_id=did, actor_id=durand, send_id=sid,
                        report="Hématome sous-dural chronique gauche de 12 mm, sans effet de masse significatif. "
                               "Surveillance clinique, contrôle scanner à 4 semaines.",
                        conclusion="Pas d'indication chirurgicale urgente.", occurred_at=at(117))
    relais.close_dossier(dossier_id=did, actor_id=martin, note="Avis intégré au dossier patient.", occurred_at=at(110))
    # 6. declined
    did, sid = new(patients[5], "generic_opinion", "Avis sur céphalées chroniques.", "routine", 48, mtp, "neurochirurgie")
    relais.send_dossier(dossier_id=did, actor_id=martin, occurred_at=at(47.9))
    relais.decline(dossier_id=did, actor_id=petit, send_id=sid, reason_code="not_competent",
                   reason="Relève de la neurologie.", occurred_at=at(40))
    # 7. out of region, by e-mail invitation
    did, sid = new(patients[0], "out_of_region_opinion", "Second avis hors région sur malformation vasculaire.",
                   "routine", 10, paris, None, channel="email_invitation")
    relais.send_dossier(dossier_id=did, actor_id=martin, occurred_at=at(9.9))
    # 9. a stroke request sent 6 minutes ago and not taken in charge: its 10-minute accept deadline passes
    #    about 4 minutes after the demo starts, and it escalates to the neuroradiology on-call pool (Sophie Bernard)
    did, sid = new(patients[3], "stroke_opinion", "Aphasie brutale, NIHSS 9. Avis neuroradiologique : thrombectomie ?",
                   "stat", 0.2, tlse, "neuroradio")
    relais.send_dossier(dossier_id=did, actor_id=martin, occurred_at=at(0.1))
    # 8. cancelled
    did, sid = new(patients[1], "emergency_opinion", "Douleur thoracique : avis cardiologique.", "urgent", 5, mtp, None)
    relais.cancel_dossier(dossier_id=did, actor_id=martin, reason="Patient transféré directement.", occurred_at=at(4.5))
    # 10. a kidney-transplant MDT session in three days at 14:00 (Paris), coordinated by Sophie Bernard, with one
    #     dossier on its agenda: record attendance (quorum: three specialties), then the decision
    did, sid = new(patients[5], "kidney_transplant_mdt", "Bilan pré-greffe complet : inscription sur liste d'attente ?",
                   "routine", 30, tlse, "nephro-greffe")
    relais.send_dossier(dossier_id=did, actor_id=martin, occurred_at=at(29.9))
    relais.accept(dossier_id=did, actor_id=bernard, send_id=sid, occurred_at=at(28))
    day = (now.astimezone(PARIS) + timedelta(days=3)).replace(hour=14, minute=0, second=0, microsecond=0)
    session = relais.schedule_mdt_session(
        actor_id=bernard, service_id=svc[(tlse, "nephro-greffe")], starts_at=day, duration_minutes=90,
        place="CHU de Toulouse, Rangueil — salle de staff de transplantation", video_url="https://visio.demo.relais.invalid/rcp-greffe",
        participant_ids=[bernard, durand, petit],  # three specialties can attend: the quorum can be met
    )
    relais.register_mdt_dossier(session_id=session, dossier_id=did, actor_id=bernard)


def logins_table(users: list[DemoUser]) -> str:
    lines = [f"Comptes de démonstration (mot de passe commun : {DEMO_PASSWORD})", ""]
    lines.append(f"  {'identifiant (RPPS)':<20} {'nom':<22} {'rôle'}")
    for u in users:
        lines.append(f"  {u.rpps:<20} {u.given_name + ' ' + u.family_name.upper():<22} {u.label}")
    return "\n".join(lines)


__all__ = ["DEMO_PASSWORD", "USERS", "load", "logins_table"]
