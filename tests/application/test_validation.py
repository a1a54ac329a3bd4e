"""Input validation at the application boundary (real PostgreSQL): a named field, nothing recorded.
One table of bad inputs per use case, all in one place so that a new field gets its case here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest

from application import Relais
from application.errors import AlreadyExistsError, ConflictError, ForbiddenError, NotFoundError
from domain.errors import InvalidFieldError
from domain.identifiers import luhn_key
from tests.conftest import PATIENT, rpps


def recorded(relais: Relais) -> int:
    return relais.max_position()


def refused_field(relais: Relais, field: str, action: Callable[[], object]) -> InvalidFieldError:
    before = recorded(relais)
    with pytest.raises(InvalidFieldError) as e:
        action()
    assert e.value.field == field, f"expected field {field!r}, got {e.value.field!r}: {e.value}"
    assert recorded(relais) == before
    return e.value


def create(relais: Relais, world: dict, **overrides) -> str:
    args = dict(actor_id=world["requester"], workflow="generic_opinion", question="Avis ?", consent="given", **PATIENT)
    args.update(overrides)
    return relais.create_dossier(**args)


def finess(prefix: str) -> str:
    """A valid FINESS from 8 leading characters (Corsican 2A/2B: the letter counts as 0 in the key)."""
    return prefix + luhn_key(prefix.replace("A", "0").replace("B", "0"))


# ------------------------------------------------------------------ directory


ESTABLISHMENT_CASES = [
        (dict(finess="310781407", name="CHU", department="31"), "finess"),
        (dict(finess="31078140", name="CHU", department="31"), "finess"),
        (dict(finess="310781406", name="CHU", department="20"), "department"),
        (dict(finess="310781406", name="CHU", department="99"), "department"),
        (dict(finess="310781406", name="CHU", department="XX"), "department"),
        (dict(finess="310781406", name="CHU", department="31", region="LR"), "region"),
        (dict(finess="310781406", name="  ", department="31"), "name"),
        (dict(finess="310781406", name="x" * 201, department="31"), "name"),
]


def test_establishment_bad_input(relais, subtests):
    for kwargs, field in ESTABLISHMENT_CASES:
        with subtests.test(field=field, **{k: str(v)[:20] for k, v in kwargs.items()}):
            refused_field(relais, field, lambda: relais.add_establishment(**kwargs))
    assert recorded(relais) == 0


def test_establishment_region_derived_from_department(relais):
    a = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    b = relais.add_establishment(finess=finess("2A000001"), name="CH d'Ajaccio", department="2a")
    c = relais.add_establishment(finess=finess("97000001"), name="CHU de La Réunion", department="974")
    assert relais.establishment(establishment_id=a).region == "OCC"
    assert (relais.establishment(establishment_id=b).department, relais.establishment(establishment_id=b).region) == (
        "2A", "COR")
    assert relais.establishment(establishment_id=c).region == "REU"
    assert relais.establishment(finess="310781406").id == a


def test_duplicate_establishment(relais):
    first = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    before = recorded(relais)
    with pytest.raises(AlreadyExistsError):
        relais.add_establishment(finess="310781406", name="Autre nom", department="31")
    assert issubclass(AlreadyExistsError, ConflictError)
    assert recorded(relais) == before
    assert relais.establishment(establishment_id=first).name == "CHU de Toulouse"


PRACTITIONER_CASES = [
        (dict(rpps="10000000018"), "rpps"),  # wrong key (rpps(1) ends with 7)
        (dict(rpps="1000000001"), "rpps"),
        (dict(roles=["surgeon"]), "role"),
        (dict(roles=[]), "role"),
        (dict(profession="wizard"), "profession"),
        (dict(email="not-an-email"), "email"),
        (dict(family_name=""), "family_name"),
        (dict(service_ids=["nope"]), "service_id"),
]


def test_practitioner_bad_input(relais, subtests):
    est = relais.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
    for overrides, field in PRACTITIONER_CASES:
        with subtests.test(field=field, overrides=str(overrides)):
            args = dict(rpps=rpps(1), family_name="Martin", given_name="Claire", establishment_id=est,
                        roles=["clinician"])
            args.update(overrides)
            refused_field(relais, field, lambda: relais.add_practitioner(**args))


def test_duplicate_practitioner(relais, world):
    before = recorded(relais)
    with pytest.raises(AlreadyExistsError):
        relais.add_practitioner(rpps=rpps(1), family_name="X", given_name="Y", establishment_id=world["toulouse"],
                                roles=["clinician"])
    assert recorded(relais) == before


def test_practitioner_in_unknown_establishment(relais):
    with pytest.raises(NotFoundError):
        relais.add_practitioner(rpps=rpps(1), family_name="X", given_name="Y", establishment_id=str(uuid4()),
                                roles=["clinician"])
    assert recorded(relais) == 0


# ------------------------------------------------------------------ dossier creation


DOSSIER_CASES = [
        (dict(workflow="telepathy"), "workflow"),
        (dict(workflow="legacy"), "workflow"),
        (dict(urgency="whenever"), "urgency"),
        (dict(question=""), "question"),
        (dict(question="   \n "), "question"),
        (dict(question="x" * 10_001), "question"),
        (dict(question="bip\x07"), "question"),
        (dict(consent="perhaps"), "consent"),
        (dict(imaging_source="fax"), "imaging_source"),
        (dict(patient_birth_name="Dupont3"), "birth_name"),
        (dict(patient_first_names=""), "first_names"),
        (dict(patient_birth_date="2999-01-01"), "birth_date"),
        (dict(patient_birth_date="02/03/1950"), "birth_date"),
        (dict(patient_birth_date="1850-01-01"), "birth_date"),
        (dict(patient_sex="X"), "sex"),
        (dict(patient_birth_place_code="3155"), "birth_place_code"),
        (dict(patient_ins="185057800608400"), "ins"),
        (dict(requester_service_id="not-mine"), "requester_service_id"),
]


def test_create_dossier_bad_input(relais, world, subtests):
    for overrides, field in DOSSIER_CASES:
        with subtests.test(field=field, overrides=str(overrides)[:60]):
            refused_field(relais, field, lambda: create(relais, world, **overrides))


def test_question_of_exactly_10000_characters_accepted(relais, world):
    did = create(relais, world, question="x" * 10_000)
    assert len(relais.get_dossier(dossier_id=did, actor_id=world["requester"]).question) == 10_000


def test_birth_date_tomorrow_refused_today_accepted(relais, world):
    today = datetime.now(ZoneInfo("Europe/Paris")).date()
    refused_field(relais, "birth_date", lambda: create(
        relais, world, patient_birth_date=(today + timedelta(days=1)).isoformat()))
    did = create(relais, world, patient_birth_date=today.isoformat())
    assert relais.get_dossier(dossier_id=did, actor_id=world["requester"]).patient["birth_date"] == today.isoformat()


def test_business_time_clock_skew(relais, world):
    now = datetime.now(UTC)
    refused_field(relais, "occurred_at", lambda: create(relais, world, occurred_at=now + timedelta(minutes=10)))
    refused_field(relais, "occurred_at", lambda: create(relais, world, occurred_at=now + timedelta(minutes=3)))
    soon = now + timedelta(minutes=1)
    did = create(relais, world, occurred_at=soon)
    assert relais.get_dossier(dossier_id=did, actor_id=world["requester"]).created_on == soon


def test_business_time_in_another_timezone_is_stored_in_utc(relais, world):
    paris = timezone(timedelta(hours=1))
    when = datetime(2024, 1, 15, 9, 0, tzinfo=paris)
    did = create(relais, world, occurred_at=when)
    created_on = relais.get_dossier(dossier_id=did, actor_id=world["requester"]).created_on
    assert created_on == when
    assert created_on.utcoffset() == timedelta(0)


def test_naive_datetime_refused(relais, world, sent_dossier):
    naive = datetime.now() - timedelta(hours=1)
    refused_field(relais, "occurred_at", lambda: create(relais, world, occurred_at=naive))
    refused_field(relais, "occurred_at", lambda: relais.accept(
        dossier_id=sent_dossier["dossier_id"], actor_id=world["recipient"], send_id=sent_dossier["send_id"],
        occurred_at=naive))


def test_future_business_time_refused_on_commands_too(relais, world, sent_dossier):
    later = datetime.now(UTC) + timedelta(minutes=10)
    refused_field(relais, "occurred_at", lambda: relais.give_opinion(
        dossier_id=sent_dossier["dossier_id"], actor_id=world["recipient"], send_id=sent_dossier["send_id"],
        report="Avis", occurred_at=later))


def test_valid_ins_accepted(relais, world):
    body = "2500331555012"
    ins = body + f"{97 - int(body) % 97:02d}"
    did = create(relais, world, patient_ins=ins)
    assert relais.get_dossier(dossier_id=did, actor_id=world["requester"]).patient["ins"] == ins


# ------------------------------------------------------------------ documents and imaging


UID_CASES = [
        ("1.2.840.113619.2.55.3.604688119", True),
        ("1.2.3", True),
        ("1.2.3.", False),
        (".1.2", False),
        ("1.2.abc", False),
        ("1..2", False),
        ("", False),
        ("1." + "2" * 62, True),  # 64 characters: the DICOM UI limit
        ("1." + "2" * 63, False),  # 65 characters
]


def test_dicom_study_uid(relais, world, subtests):
    did = create(relais, world)
    for uid, valid in UID_CASES:
        with subtests.test(uid=uid, valid=valid):
            action = lambda: relais.attach_imaging(  # noqa: E731
                dossier_id=did, actor_id=world["requester"], study_instance_uid=uid, source="file_import")
            if valid:
                action()
                imaging = relais.get_dossier(dossier_id=did, actor_id=world["requester"]).imaging
                assert uid in [i["study_instance_uid"] for i in imaging]
            else:
                refused_field(relais, "study_instance_uid", action)


def test_imaging_source_none_refused_for_a_study(relais, world):
    did = create(relais, world)
    refused_field(relais, "source", lambda: relais.attach_imaging(
        dossier_id=did, actor_id=world["requester"], study_instance_uid="1.2.3", source="none"))
    refused_field(relais, "source", lambda: relais.attach_imaging(
        dossier_id=did, actor_id=world["requester"], study_instance_uid="1.2.3", source="usb_key"))


DOCUMENT_CASES = [
        (dict(filename="../../etc/passwd"), "filename"),
        (dict(filename=""), "filename"),
        (dict(media_type="PDF"), "media_type"),
        (dict(sha256="abc"), "sha256"),
        (dict(size=-1), "size"),
        (dict(description="d" * 501), "description"),
]


def test_document_bad_input(relais, world, subtests):
    did = create(relais, world)
    for overrides, field in DOCUMENT_CASES:
        with subtests.test(field=field, overrides=str(overrides)):
            args = dict(dossier_id=did, actor_id=world["requester"], filename="cr.pdf", media_type="application/pdf",
                        size=10, sha256="0" * 64)
            args.update(overrides)
            refused_field(relais, field, lambda: relais.attach_document(**args))


# ------------------------------------------------------------------ recipients


@pytest.fixture()
def paris(relais) -> str:
    return relais.add_establishment(finess=finess("75000001"), name="AP-HP Pitié-Salpêtrière", department="75")


def test_out_of_region_recipient_without_channel_refused(relais, world, paris):
    did = create(relais, world)
    refused_field(relais, "channel", lambda: relais.address_recipient(
        dossier_id=did, actor_id=world["requester"], establishment_id=paris))


def test_out_of_region_recipient_with_channel(relais, world, paris):
    did = create(relais, world)
    sid = relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=paris,
                                   channel="national_network")
    (send,) = relais.get_dossier(dossier_id=did, actor_id=world["requester"]).sends
    assert (send["send_id"], send["region"], send["department"], send["channel"]) == (sid, "IDF", "75", "national_network")


def test_unknown_channel_refused(relais, world, paris):
    did = create(relais, world)
    refused_field(relais, "channel", lambda: relais.address_recipient(
        dossier_id=did, actor_id=world["requester"], establishment_id=paris, channel="pigeon"))


def test_in_region_recipient_with_channel_refused(relais, world):
    did = create(relais, world)
    refused_field(relais, "channel", lambda: relais.address_recipient(
        dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"], channel="email_invitation"))


def test_recipient_service_of_another_establishment_refused(relais, world):
    did = create(relais, world)
    refused_field(relais, "service_id", lambda: relais.address_recipient(
        dossier_id=did, actor_id=world["requester"], establishment_id=world["toulouse"], service_id=world["neuro"]))


def test_recipient_practitioner_not_working_there_refused(relais, world):
    did = create(relais, world)
    refused_field(relais, "practitioner_id", lambda: relais.address_recipient(
        dossier_id=did, actor_id=world["requester"], establishment_id=world["toulouse"],
        practitioner_id=world["recipient"]))
    refused_field(relais, "practitioner_id", lambda: relais.address_recipient(  # an auditor is not a clinician
        dossier_id=did, actor_id=world["requester"], establishment_id=world["toulouse"],
        practitioner_id=world["auditor"]))


# ------------------------------------------------------------------ not found, forbidden


@pytest.mark.parametrize("dossier_id", [str(uuid4()), "not-a-uuid"], ids=["unknown-uuid", "not-a-uuid"])
def test_unknown_dossier(relais, world, dossier_id):
    with pytest.raises(NotFoundError):
        relais.get_dossier(dossier_id=dossier_id, actor_id=world["requester"])
    with pytest.raises(NotFoundError):
        relais.edit_draft(dossier_id=dossier_id, actor_id=world["requester"], question="?")
    before = recorded(relais)
    with pytest.raises(NotFoundError):
        relais.send_dossier(dossier_id=dossier_id, actor_id=world["requester"])
    assert recorded(relais) == before


def test_an_establishment_id_is_not_a_dossier(relais, world):
    with pytest.raises(NotFoundError):
        relais.get_dossier(dossier_id=world["toulouse"], actor_id=world["requester"])


def test_unknown_recipient_establishment(relais, world):
    did = create(relais, world)
    before = recorded(relais)
    with pytest.raises(NotFoundError):
        relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=str(uuid4()))
    assert recorded(relais) == before


@pytest.mark.parametrize("actor", [str(uuid4()), "intruder"], ids=["unknown-uuid", "intruder"])
def test_unknown_practitioner_as_actor(relais, world, sent_dossier, actor):
    before = recorded(relais)
    with pytest.raises(ForbiddenError):
        create(relais, world, actor_id=actor)
    with pytest.raises(ForbiddenError):
        relais.accept(dossier_id=sent_dossier["dossier_id"], actor_id=actor, send_id=sent_dossier["send_id"])
    with pytest.raises(ForbiddenError):
        relais.get_dossier(dossier_id=sent_dossier["dossier_id"], actor_id=actor)
    assert recorded(relais) == before


def test_establishment_id_as_actor_is_forbidden(relais, world):
    with pytest.raises(ForbiddenError):
        create(relais, world, actor_id=world["toulouse"])


def test_auditor_cannot_create_a_dossier(relais, world):
    before = recorded(relais)
    with pytest.raises(ForbiddenError):
        create(relais, world, actor_id=world["auditor"])
    assert recorded(relais) == before


def test_validation_happens_before_anything_is_loaded_or_written(relais, world):
    """A valid command still works after a burst of refused ones (no half-written state)."""
    for bad in (dict(workflow="x"), dict(urgency="x"), dict(question="")):
        with pytest.raises(InvalidFieldError):
            create(relais, world, **bad)
    did = create(relais, world)
    assert relais.repository.get(UUID(did)).version == 1


def test_newborn_at_half_past_midnight_in_paris(settings):
    """Birth dates are compared with the local (Europe/Paris) date, not the UTC one.

    At 00:30 in Paris on 2 June it is still 1 June in UTC: a baby born on 2 June is not "born in the future".
    """
    clock = lambda: datetime(2025, 6, 1, 22, 30, tzinfo=UTC)  # noqa: E731 - 2 June, 00:30 in Paris
    app = Relais(env=settings.eventsourcing_env(), clock=clock)
    try:
        est = app.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
        doc = app.add_practitioner(rpps=rpps(1), family_name="Martin", given_name="Claire", establishment_id=est,
                                   roles=["clinician"])
        newborn = dict(PATIENT, patient_birth_date="2025-06-02")
        did = app.create_dossier(actor_id=doc, workflow="generic_opinion", question="Souffle cardiaque ?",
                                 consent="given", **newborn)
        assert app.get_dossier(dossier_id=did, actor_id=doc).patient["birth_date"] == "2025-06-02"
        patient = {k.removeprefix("patient_"): v for k, v in newborn.items()}
        app.edit_draft(dossier_id=did, actor_id=doc, patient=dict(patient, first_names="Léa"))
        # still refused the day after, in Paris
        before = app.max_position()
        with pytest.raises(InvalidFieldError) as e:
            app.create_dossier(actor_id=doc, workflow="generic_opinion", question="?", consent="given",
                               **dict(PATIENT, patient_birth_date="2025-06-03"))
        assert e.value.field == "birth_date"
        with pytest.raises(InvalidFieldError) as e:
            app.edit_draft(dossier_id=did, actor_id=doc, patient=dict(patient, birth_date="2025-06-03"))
        assert e.value.field == "birth_date"
        assert app.max_position() == before
    finally:
        app.close()
