"""MDT sessions through the application on PostgreSQL: the decision is the dossier's opinion, in one transaction."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from application import Relais
from application.actors import Acting
from application.errors import ForbiddenError
from domain.errors import InvalidFieldError, SendStateError
from domain.mdt import MdtSession, QuorumNotMetError
from tests.conftest import PATIENT, rpps


@pytest.fixture()
def rcp(relais: Relais) -> dict:
    """Montpellier sends a kidney-transplant dossier to Toulouse's transplant team; three specialists at Toulouse."""
    mtp = relais.add_establishment(finess="340780477", name="CHU de Montpellier", department="34")
    tlse = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    team = relais.add_service(establishment_id=tlse, code="nephro-greffe", name="Néphrologie et transplantation",
                              specialty="néphrologie", kind="team")
    requester = relais.add_practitioner(rpps=rpps(21), family_name="Martin", given_name="Claire",
                                        establishment_id=mtp, roles=["clinician"])
    coordinator = relais.add_practitioner(rpps=rpps(22), family_name="Bernard", given_name="Sophie",
                                          establishment_id=tlse, roles=["clinician"], service_ids=[team],
                                          specialty="néphrologie")
    others = [relais.add_practitioner(rpps=rpps(23 + i), family_name=name, given_name="Dr", establishment_id=tlse,
                                      roles=["clinician"]) for i, name in enumerate(["Faure", "Lopez", "Simon"])]
    did = relais.create_dossier(actor_id=requester, workflow="kidney_transplant_mdt", question="Inscription en liste ?",
                                urgency="routine", consent="given", **PATIENT)
    sid = relais.address_recipient(dossier_id=did, actor_id=requester, establishment_id=tlse, service_id=team)
    relais.send_dossier(dossier_id=did, actor_id=requester)
    session_id = relais.schedule_mdt_session(
        actor_id=coordinator, service_id=team, starts_at=relais.clock() + timedelta(days=1), duration_minutes=60,
        place="Salle de staff", participant_ids=[coordinator, *others],
    )
    relais.register_mdt_dossier(session_id=session_id, dossier_id=did, actor_id=coordinator)
    return {"tlse": tlse, "mtp": mtp, "team": team, "requester": requester, "coordinator": coordinator,
            "others": others, "dossier_id": did, "send_id": sid, "session_id": session_id}


def attend(relais: Relais, rcp: dict, who: str, specialty: str, status: str = "present") -> None:
    relais.record_mdt_attendance(session_id=rcp["session_id"], actor_id=rcp["coordinator"], practitioner_id=who,
                                 specialty=specialty, status=status)


def test_decision_gives_the_opinion_in_the_same_transaction(relais: Relais, rcp: dict):
    attend(relais, rcp, rcp["coordinator"], "néphrologie")
    attend(relais, rcp, rcp["others"][0], "urologie")
    decide = dict(session_id=rcp["session_id"], dossier_id=rcp["dossier_id"], actor_id=rcp["coordinator"],
                  decision="Inscription sur liste d'attente", proposal="Inscrire le patient",
                  rationale="Bilan pré-greffe complet", follow_up="Réévaluation à 6 mois")
    with pytest.raises(QuorumNotMetError, match="2 spécialités présentes sur 3 requises"):
        relais.record_mdt_decision(**decide)
    assert relais.get_dossier(dossier_id=rcp["dossier_id"], actor_id=rcp["requester"]).sends[0]["state"] == "requested"
    attend(relais, rcp, rcp["others"][1], "anesthésie-réanimation", "remote")
    head = relais.max_position()
    relais.record_mdt_decision(**decide)
    # one transaction: the opinion and the decision are the only two new events, next to each other in the log
    new = list(relais.notification_log.select(head + 1, 10))
    assert [n.topic for n in new] == ["relais:Dossier.OpinionGiven", "relais:MdtSession.DecisionRecorded"]
    d = relais.get_dossier(dossier_id=rcp["dossier_id"], actor_id=rcp["requester"])
    opinion = d.sends[0]["opinion"]
    assert d.sends[0]["state"] == "answered"
    assert opinion["conclusion"] == "Inscription sur liste d'attente"
    assert "Proposition : Inscrire le patient" in opinion["report"]
    assert f"Sophie BERNARD, RPPS {rpps(22)}, néphrologie" in opinion["report"]
    assert "anesthésie-réanimation (à distance)" in opinion["report"]
    assert opinion["recommendations"] == "Réévaluation à 6 mois"


def test_a_refused_opinion_records_no_decision(relais: Relais, rcp: dict):
    """The send waits for a complement: the opinion is refused, and the session's decision with it."""
    relais.request_complement(dossier_id=rcp["dossier_id"], actor_id=rcp["coordinator"], send_id=rcp["send_id"],
                              message="Bilan HLA ?")
    for who, specialty in zip([rcp["coordinator"], *rcp["others"]], ["néphrologie", "urologie", "immunologie"],
                              strict=False):
        attend(relais, rcp, who, specialty)
    version = relais.repository.get(UUID(rcp["session_id"])).version
    with pytest.raises(SendStateError):
        relais.record_mdt_decision(session_id=rcp["session_id"], dossier_id=rcp["dossier_id"],
                                   actor_id=rcp["coordinator"], decision="Inscription")
    session = relais.repository.get(UUID(rcp["session_id"]))
    assert isinstance(session, MdtSession) and session.version == version
    assert session.agenda[rcp["dossier_id"]]["decision"] is None


def test_session_read_and_managed_by_the_organising_side_only(relais: Relais, rcp: dict):
    view = relais.mdt_session(session_id=rcp["session_id"], actor_id=rcp["coordinator"])
    assert view.may_manage and view.agenda[0].readable and view.agenda[0].question == "Inscription en liste ?"
    assert [p["name"] for p in view.participants][0] == "Sophie BERNARD"
    with pytest.raises(ForbiddenError):
        relais.mdt_session(session_id=rcp["session_id"], actor_id=rcp["requester"])
    other = relais.mdt_session(session_id=rcp["session_id"], actor_id=rcp["others"][0])
    assert not other.may_manage and not other.agenda[0].readable and other.agenda[0].patient == {}
    with pytest.raises(Exception, match="coordinateur"):
        attend(relais, {**rcp, "coordinator": rcp["others"][0]}, rcp["others"][0], "urologie")


def test_schedule_is_once_per_form(relais: Relais, rcp: dict):
    who = Acting(rcp["coordinator"], rcp["tlse"], "clinician", token="A" * 20)
    args = dict(actor_id=who, service_id=rcp["team"], starts_at=relais.clock() + timedelta(days=3),
                duration_minutes=60, video_url="https://visio.example.org/rcp")
    first = relais.schedule_mdt_session(**args)
    assert relais.schedule_mdt_session(**args) == first
    with pytest.raises(InvalidFieldError, match="service inconnu dans CHU de Montpellier"):
        relais.schedule_mdt_session(**{**args, "actor_id": rcp["requester"]})
