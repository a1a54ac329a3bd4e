"""The MdtSession aggregate: registration rules, attendance, the quorum, decisions, idempotence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from application import Relais
from domain.dossier import Dossier
from domain.errors import InvalidFieldError
from domain.mdt import MdtNotAllowedError, MdtSession, MdtStateError, QuorumNotMetError, fiche_text
from domain.values import Actor
from tests.conftest import PATIENT, rpps

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture()
def relais():
    app = Relais(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


@pytest.fixture()
def kidney(relais: Relais) -> dict:
    """Rodez sends kidney-transplant dossiers to Toulouse's transplant team, which organises the sessions."""
    rodez = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
    tlse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    team = relais.add_service(establishment_id=tlse, code="nephro-greffe", name="Néphrologie et transplantation",
                              specialty="néphrologie", kind="team")
    other = relais.add_service(establishment_id=tlse, code="uro", name="Urologie", specialty="urologie")
    requester = relais.add_practitioner(rpps=rpps(11), family_name="Martin", given_name="Claire",
                                        establishment_id=rodez, roles=["clinician"])
    coordinator = relais.add_practitioner(rpps=rpps(12), family_name="Bernard", given_name="Sophie",
                                          establishment_id=tlse, roles=["clinician"], service_ids=[team])
    urologist = relais.add_practitioner(rpps=rpps(13), family_name="Faure", given_name="Jean",
                                        establishment_id=tlse, roles=["clinician"], service_ids=[other])

    def dossier(workflow: str = "kidney_transplant_mdt", send: bool = True, to: str = tlse) -> Dossier:
        did = relais.create_dossier(actor_id=requester, workflow=workflow, question="Inscription en liste ?",
                                    urgency="routine", consent="given", **PATIENT)
        relais.address_recipient(dossier_id=did, actor_id=requester, establishment_id=to,
                                 service_id=team if to == tlse else None)
        if send:
            relais.send_dossier(dossier_id=did, actor_id=requester)
        return relais.repository.get(UUID(did))

    return {
        "tlse": tlse, "rodez": rodez, "team": team, "dossier": dossier,
        "coordinator": Actor(practitioner_id=coordinator, role="clinician", establishment_id=tlse, service_ids=(team,),
                             name="Sophie Bernard"),
        "urologist": Actor(practitioner_id=urologist, role="clinician", establishment_id=tlse, service_ids=(other,),
                           name="Jean Faure"),
        "requester": Actor(practitioner_id=requester, role="clinician", establishment_id=rodez, name="Claire Martin"),
    }


def session_of(k: dict, **changes) -> MdtSession:
    args = dict(
        session_id=uuid4(), session_type="kidney_transplant", title="", starts_at=NOW + timedelta(days=2),
        duration_minutes=90, place="Salle de staff, 3e étage", video_url="",
        specialties=["néphrologie", "urologie", "anesthésie-réanimation", "immunologie"], participants=[],
        service={"service_id": k["team"], "establishment_id": k["tlse"]}, actor=k["coordinator"], occurred_at=NOW,
    )
    args.update(changes)
    return MdtSession.schedule(**args)


def person(n: int) -> dict:
    return {"practitioner_id": str(uuid4()), "name": f"Docteur {n}", "rpps": rpps(100 + n)}


def test_schedule_checks_time_place_and_type(kidney):
    with pytest.raises(InvalidFieldError, match="fuseau"):
        session_of(kidney, starts_at=datetime(2026, 12, 1, 14, 0))
    with pytest.raises(InvalidFieldError, match="lieu ou un lien"):
        session_of(kidney, place="")
    with pytest.raises(InvalidFieldError, match="déjà terminée"):
        session_of(kidney, starts_at=NOW - timedelta(minutes=90))
    with pytest.raises(InvalidFieldError, match="type de séance"):
        session_of(kidney, session_type="cardio")
    with pytest.raises(MdtNotAllowedError):  # the organising service must be of the coordinator's establishment
        session_of(kidney, actor=kidney["requester"])
    s = session_of(kidney, place="", video_url="https://visio.example.org/rcp")
    assert s.coordinator_id == kidney["coordinator"].practitioner_id and s.quorum == 3


def test_registration_rules(kidney):
    s = session_of(kidney)
    with pytest.raises(InvalidFieldError, match="RCP greffe rénale"):
        s.register(dossier=kidney["dossier"]("generic_opinion"), actor=kidney["coordinator"], occurred_at=NOW)
    with pytest.raises(MdtStateError, match="pas été adressé"):  # a draft: never sent
        s.register(dossier=kidney["dossier"](send=False), actor=kidney["coordinator"], occurred_at=NOW)
    with pytest.raises(MdtStateError, match="pas été adressé"):  # sent to another establishment
        s.register(dossier=kidney["dossier"](to=kidney["rodez"]), actor=kidney["coordinator"], occurred_at=NOW)
    d = kidney["dossier"]()
    with pytest.raises(MdtNotAllowedError):  # the requester does not manage the session
        s.register(dossier=d, actor=kidney["requester"], occurred_at=NOW)
    with pytest.raises(MdtNotAllowedError):  # a clinician of another service of the establishment either
        s.register(dossier=d, actor=kidney["urologist"], occurred_at=NOW)
    assert s.version == 1
    s.register(dossier=d, actor=kidney["coordinator"], occurred_at=NOW)
    s.register(dossier=d, actor=kidney["coordinator"], occurred_at=NOW)  # again: nothing new
    assert s.version == 2 and s.registered() == [str(d.id)]
    s.withdraw(dossier_id=str(d.id), reason="bilan incomplet", actor=kidney["coordinator"], occurred_at=NOW)
    assert s.registered() == []
    with pytest.raises(MdtStateError, match="pas inscrit"):
        s.withdraw(dossier_id=str(d.id), reason="", actor=kidney["coordinator"], occurred_at=NOW)


def test_decision_refused_without_quorum_then_recorded(kidney):
    s = session_of(kidney)
    d = kidney["dossier"]()
    c = kidney["coordinator"]
    s.register(dossier=d, actor=c, occurred_at=NOW)
    s.record_attendance(participant=person(1), specialty="néphrologie", status="present", actor=c, occurred_at=NOW)
    s.record_attendance(participant=person(2), specialty="urologie", status="remote", actor=c, occurred_at=NOW)
    third = person(3)
    s.record_attendance(participant=third, specialty="immunologie", status="absent", actor=c, occurred_at=NOW)
    version = s.version
    with pytest.raises(QuorumNotMetError) as refused:
        s.record_decision(dossier_id=str(d.id), decision="Inscription", fiche={}, actor=c, occurred_at=NOW)
    assert str(refused.value) == (
        "quorum non atteint : 2 spécialités présentes sur 3 requises (manquent : anesthésie-réanimation, immunologie)"
    )
    assert s.version == version and s.agenda[str(d.id)]["decision"] is None
    # the same attendance again records nothing; the third specialty present meets the quorum
    s.record_attendance(participant=third, specialty="immunologie", status="absent", actor=c, occurred_at=NOW)
    assert s.version == version
    s.record_attendance(participant=third, specialty="immunologie", status="present", actor=c, occurred_at=NOW)
    assert s.quorum_state() == {"met": True, "present": ["immunologie", "néphrologie", "urologie"], "required": 3,
                                "missing": ["anesthésie-réanimation"]}
    with pytest.raises(MdtStateError, match="pas inscrit"):
        s.record_decision(dossier_id=str(uuid4()), decision="x", fiche={}, actor=c, occurred_at=NOW)
    send_id = s.record_decision(dossier_id=str(d.id), decision="Inscription sur liste d'attente",
                                fiche={"proposal": "Inscription", "rationale": "Bilan complet", "follow_up": "M3"},
                                actor=c, occurred_at=NOW)
    assert send_id == next(iter(d.sends))
    recorded = s.agenda[str(d.id)]["decision"]
    assert [p["specialty"] for p in recorded["participants"]] == ["néphrologie", "urologie", "immunologie"]
    assert recorded["participants"][1]["status"] == "remote"
    with pytest.raises(MdtStateError, match="déjà enregistrée"):
        s.record_decision(dossier_id=str(d.id), decision="autre", fiche={}, actor=c, occurred_at=NOW)
    with pytest.raises(MdtStateError, match="déjà enregistrée"):
        s.withdraw(dossier_id=str(d.id), reason="", actor=c, occurred_at=NOW)
    with pytest.raises(MdtStateError):
        s.cancel(reason="", actor=c, occurred_at=NOW)


def test_quorum_counts_distinct_specialties_and_is_per_session_type(kidney, monkeypatch):
    s = session_of(kidney, specialties=["néphrologie", "urologie"])
    c = kidney["coordinator"]
    for n in range(3):  # three nephrologists are one specialty
        s.record_attendance(participant=person(n), specialty="néphrologie", status="present", actor=c, occurred_at=NOW)
    with pytest.raises(QuorumNotMetError, match=r"1 spécialité présente sur 3 requises \(manquent : urologie\)"):
        s.check_quorum()
    monkeypatch.setitem(__import__("domain.mdt").mdt.QUORUM, "kidney_transplant", 1)
    s.check_quorum()


def test_reschedule_and_cancel_bump_the_sequence(kidney):
    s = session_of(kidney)
    c = kidney["coordinator"]
    s.reschedule(starts_at=s.starts_at, duration_minutes=s.duration_minutes, place=s.place, video_url="", actor=c,
                 occurred_at=NOW)
    assert s.sequence == 0 and s.version == 1  # nothing changed
    s.reschedule(starts_at=s.starts_at + timedelta(hours=1), duration_minutes=60, place=s.place, video_url="", actor=c,
                 occurred_at=NOW)
    s.cancel(reason="Congrès", actor=c, occurred_at=NOW)
    assert s.sequence == 2 and s.cancelled is not None
    with pytest.raises(MdtStateError, match="annulée"):
        s.register(dossier=kidney["dossier"](), actor=c, occurred_at=NOW)


def test_fiche_text_names_participants_with_rpps():
    out = fiche_text(label="RCP greffe rénale", starts_at=NOW, decision="Inscription",
                     fiche={"proposal": "Inscrire", "rationale": "", "follow_up": "Bilan à 3 mois"},
                     participants=[{"name": "Sophie Bernard", "rpps": "10000000012", "specialty": "néphrologie",
                                    "status": "remote"}])
    assert "RCP greffe rénale du 29/11/2026 à 13:00" in out
    assert "Proposition : Inscrire" in out and "Argumentaire" not in out and "Suivi : Bilan à 3 mois" in out
    assert "- Sophie Bernard, RPPS 10000000012, néphrologie (à distance)" in out
