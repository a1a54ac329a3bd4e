"""Encryption at rest: with a cipher key, patient data never reaches PostgreSQL in clear."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from uuid import UUID

import psycopg
import pytest
from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import MapperDeserialisationError

from adapters.settings import Settings, conninfo
from application import Relais
from entrypoints.bootstrap import build_app

NAME = "Quaresmadouz"
FIRST_NAMES = "Philomène Aurélie"
QUESTION = "Kyste arachnoidien temporal xq7-zebre : indication neurochirurgicale ?"
PATIENT = dict(
    patient_birth_name=NAME, patient_first_names=FIRST_NAMES, patient_birth_date="1961-07-14",
    patient_sex="F", patient_birth_place_code="34172",
)
SECRETS = [NAME.encode(), NAME.upper().encode(), FIRST_NAMES.encode(), QUESTION.encode(), b"xq7-zebre", b"34172"]


@pytest.fixture(params=["ciphered"])
def mode(request) -> str:
    return request.param


@pytest.fixture()
def relais(settings: Settings, mode: str) -> Iterator[Relais]:
    """Overrides conftest's `relais`: the same application, with or without a cipher key."""
    if mode == "ciphered":
        settings = dataclasses.replace(settings, cipher_key=AESCipher.create_key(32))
    app = build_app(settings)
    app.test_settings = settings  # type: ignore[attr-defined]
    yield app
    app.close()


def raw_events(settings: Settings) -> list[tuple[str, bytes]]:
    with psycopg.connect(conninfo(settings.database_url)) as conn:
        return [(topic, bytes(state)) for topic, state in conn.execute("SELECT topic, state FROM relais_events")]


def make_dossier(relais: Relais, world: dict) -> str:
    did = relais.create_dossier(
        actor_id=world["requester"], workflow="generic_opinion", question=QUESTION, consent="given", **PATIENT
    )
    relais.address_recipient(dossier_id=did, actor_id=world["requester"], establishment_id=world["montpellier"],
                             service_id=world["neuro"])
    relais.send_dossier(dossier_id=did, actor_id=world["requester"])
    return did


def test_cipher_is_configured(relais):
    assert relais.env["CIPHER_TOPIC"] == "eventsourcing.cryptography:AESCipher"
    assert isinstance(relais.mapper.cipher, AESCipher)


def test_patient_name_and_question_are_not_stored_in_clear(relais, world):
    did = make_dossier(relais, world)
    events = raw_events(relais.test_settings)
    assert len(events) == 14  # directory (11) + Created, RecipientAddressed, Sent
    for topic, state in events:
        for secret in SECRETS:
            assert secret not in state, f"{secret!r} in clear in a {topic} event"
        with pytest.raises(ValueError):  # not JSON at all (random bytes: a first "{" is possible)
            json.loads(state)
    # topics stay in clear: the log can be followed and audited without the key
    topics = [t for t, _ in events]
    assert topics[-3:] == ["relais:Dossier.Created", "relais:Dossier.RecipientAddressed", "relais:Dossier.Sent"]

    # and the application reads everything back
    d = relais.get_dossier(dossier_id=did, actor_id=world["recipient"])
    assert (d.patient["birth_name"], d.patient["first_names"], d.question) == (NAME.upper(), FIRST_NAMES, QUESTION)
    assert d.state == "requested"


def test_a_fresh_application_with_the_key_reads_it(relais, world):
    did = make_dossier(relais, world)
    other = build_app(relais.test_settings)
    try:
        assert other.get_dossier(dossier_id=did, actor_id=world["requester"]).question == QUESTION
    finally:
        other.close()


def test_without_the_key_nothing_can_be_read(relais, world):
    did = make_dossier(relais, world)
    wrong = dataclasses.replace(relais.test_settings, cipher_key=AESCipher.create_key(32))
    other = build_app(wrong)
    try:
        with pytest.raises(MapperDeserialisationError) as e:
            other.repository.get(UUID(did))
        assert QUESTION not in str(e.value)
    finally:
        other.close()


@pytest.mark.parametrize("mode", ["clear"])
def test_without_a_cipher_the_name_is_in_clear(relais, world, mode):
    """The control: the same check finds the secrets when no key is configured."""
    assert relais.mapper.cipher is None
    make_dossier(relais, world)
    created = [s for t, s in raw_events(relais.test_settings) if t == "relais:Dossier.Created"]
    assert len(created) == 1
    assert NAME.upper().encode() in created[0]
    assert QUESTION.encode() in created[0]


def test_snapshots_are_encrypted_too(relais, world):
    did = relais.create_dossier(
        actor_id=world["requester"], workflow="generic_opinion", question=QUESTION, consent="given", **PATIENT
    )
    for i in range(24):  # versions 2..25: a snapshot is taken at 25
        relais.edit_draft(dossier_id=did, actor_id=world["requester"], urgency="urgent" if i % 2 == 0 else "routine")
    with psycopg.connect(conninfo(relais.test_settings.database_url)) as conn:
        rows = conn.execute(
            "SELECT originator_version, topic, state FROM relais_snapshots WHERE originator_id = %s", (UUID(did),)
        ).fetchall()
    assert [(v, t) for v, t, _ in rows] == [(25, "eventsourcing.domain:Snapshot")]
    for secret in SECRETS:
        assert secret not in bytes(rows[0][2])
    assert relais.get_dossier(dossier_id=did, actor_id=world["requester"]).patient["birth_name"] == NAME.upper()
