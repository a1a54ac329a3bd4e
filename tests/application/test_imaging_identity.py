"""Patient identity of received images is per instance: a study mixing patients, late instances of
another patient, the requester's override recorded, every trait compared (issue 11 items 1-3)."""

from __future__ import annotations

from uuid import UUID

import pytest

from application import Relais
from application.imaging import IdentityConfirmationRequired, ReceivedInstance
from domain.dossier import Dossier
from domain.imaging import ReceivedStudy, identity_differences, identity_key

STUDY = "1.2.250.1.77.1"
DUPONT = {"id": "P123", "name": "DUPONT^JEANNE", "birth_date": "19500302", "sex": "F"}
MARTIN = {"id": "P999", "name": "MARTIN^PAUL", "birth_date": "19611224", "sex": "M"}
DOSSIER_PATIENT = {"birth_name": "DUPONT", "first_names": "Jeanne Marie", "birth_date": "1950-03-02", "sex": "F"}


def instances(patient: dict, first: int, n: int, accession: str = "ACC77", study: str = STUDY) -> list[ReceivedInstance]:
    return [
        ReceivedInstance(
            sop_instance_uid=f"{study}.9.{i}", series_instance_uid=f"{study}.1", study_instance_uid=study,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1", size=10,
            patient=patient, study={"accession_number": accession, "description": "TDM"},
            series={"modality": "CT", "description": "AXIAL", "number": 1},
        )
        for i in range(first, first + n)
    ]


def record(relais: Relais, world: dict, items: list[ReceivedInstance]) -> str:
    (u,) = relais.record_received(establishment_id=world["toulouse"], instances=items,
                                  source={"kind": "dicom_store", "calling_aet": "TLSE_GW"})
    return u.study_id


def test_every_trait_is_compared_and_a_thin_identity_is_a_difference() -> None:
    assert identity_differences(DOSSIER_PATIENT, DUPONT) == []
    # sex « O » against « M » (or « F ») was not flagged: only M and F were compared
    assert identity_differences(DOSSIER_PATIENT | {"sex": "M"}, DUPONT | {"sex": "O"}) == [("Sexe", "M", "O")]
    # a family name only: nothing to compare is not a match
    thin = identity_differences(DOSSIER_PATIENT, {"id": "X", "name": "DUPONT"})
    assert [t for t, _, _ in thin] == ["Prénom(s)", "Date de naissance", "Sexe"]
    assert ("Date de naissance", "1950-03-02", "(absent)") in thin
    # identifiers: two national identifiers (INS) that differ
    ins = DOSSIER_PATIENT | {"ins": "250039912345678"}
    assert identity_differences(ins, DUPONT | {"id": "250039912345678"}) == []
    assert identity_differences(ins, DUPONT | {"id": "1610399123456"})[0][0] == "Identifiant (INS)"
    # one identity, however typed; any trait differing is another identity
    assert identity_key(DUPONT) == identity_key(DUPONT | {"name": "Dupont^Jeanne^^"})
    assert identity_key(DUPONT) != identity_key(DUPONT | {"sex": "O"})


def test_a_study_mixing_two_patients_records_both_and_manual_attachment_needs_confirmation(
    relais: Relais, world: dict, sent_dossier: dict,
) -> None:
    """One Study Instance UID, two patients (C-STORE or retrieve): the study used to take its patient
    from its first instance and attach silently with the other patient's images."""
    sid = record(relais, world, instances(DUPONT, 0, 2) + instances(MARTIN, 2, 1))
    study = relais.repository.get(sid)
    assert isinstance(study, ReceivedStudy)
    assert sorted(p["name"] for p in study.identities.values()) == ["DUPONT^JEANNE", "MARTIN^PAUL"]
    assert study.identity_counts == {identity_key(DUPONT): 2, identity_key(MARTIN): 1}
    did = sent_dossier["dossier_id"]
    with pytest.raises(IdentityConfirmationRequired) as refused:
        relais.attach_received_study(dossier_id=did, actor_id=world["requester"], study_id=sid)
    assert len(refused.value.rows) == 2
    assert relais.get_dossier(dossier_id=did, actor_id=world["requester"]).imaging == ()
    # the right patient's images alone attach without confirmation; the other patient's stay out
    relais.attach_received_study(dossier_id=did, actor_id=world["requester"], study_id=sid,
                                 identities=[identity_key(DUPONT)])
    view = relais.view_study(dossier_id=did, actor_id=world["recipient"], study_uid=STUDY)
    assert sorted(view.instances) == [f"{STUDY}.9.0", f"{STUDY}.9.1"]
    (att,) = relais.get_dossier(dossier_id=did, actor_id=world["requester"]).imaging
    assert att["instance_count"] == 2 and "overrides" not in att


def test_the_override_is_recorded_with_who_and_which_differences(relais: Relais, world: dict, sent_dossier: dict) -> None:
    sid = record(relais, world, instances(DUPONT | {"sex": "O", "birth_date": ""}, 0, 2))
    did = sent_dossier["dossier_id"]
    with pytest.raises(IdentityConfirmationRequired):
        relais.attach_received_study(dossier_id=did, actor_id=world["requester"], study_id=sid)
    relais.attach_received_study(dossier_id=did, actor_id=world["requester"], study_id=sid, confirm_identity=True)
    (attached,) = [e for e in relais.events.get(UUID(did)) if isinstance(e, Dossier.ImagingAttached)]
    assert attached.override["by"]["practitioner_id"] == world["requester"]
    assert [d[0] for d in attached.override["differences"]] == ["Date de naissance", "Sexe"]
    assert ["Sexe", "F", "O"] in [list(d) for d in attached.override["differences"]]
    (att,) = relais.get_dossier(dossier_id=did, actor_id=world["recipient"]).imaging
    assert att["overrides"][0]["by"]["practitioner_id"] == world["requester"]


def test_an_awaited_exam_of_another_patient_is_not_attached_and_the_requester_is_told(
    relais: Relais, world: dict, sent_dossier: dict,
) -> None:
    did = sent_dossier["dossier_id"]
    relais.await_imaging(dossier_id=did, actor_id=world["requester"], accession_number="ACC77")
    shown = relais.repository.get(did).version  # the version the requester's form shows
    sid = record(relais, world, instances(DUPONT, 0, 2) + instances(MARTIN, 2, 2))
    assert relais.auto_attach(study_id=sid, dossier_ids=[did]) == []
    d = relais.get_dossier(dossier_id=did, actor_id=world["requester"])
    assert d.imaging == ()
    (held,) = d.imaging_held
    assert held["reason"] == "auto_refused" and len(held["identities"]) == 2
    # told once: the same study sent again tells nothing new
    version = relais.repository.get(did).version
    relais.auto_attach(study_id=sid, dossier_ids=[did])
    assert relais.repository.get(did).version == version
    # the platform's notice does not make the requester's open form « modifié ailleurs »
    relais.await_imaging(dossier_id=did, actor_id=world["requester"], accession_number="ACC78", expected_version=shown)


def test_instances_of_another_patient_after_attachment_are_quarantined_and_the_requester_told(
    relais: Relais, world: dict, sent_dossier: dict,
) -> None:
    did = sent_dossier["dossier_id"]
    relais.await_imaging(dossier_id=did, actor_id=world["requester"], accession_number="ACC77")
    sid = record(relais, world, instances(DUPONT, 0, 2))
    assert relais.auto_attach(study_id=sid, dossier_ids=[did]) == [did]
    # the gateway keeps sending: one more of the right patient, two of another
    record(relais, world, instances(DUPONT, 2, 1) + instances(MARTIN, 3, 2))
    relais.auto_attach(study_id=sid, dossier_ids=[did])
    d = relais.get_dossier(dossier_id=did, actor_id=world["requester"])
    (att,) = d.imaging
    assert att["instance_count"] == 3
    (held,) = d.imaging_held
    assert held["reason"] == "quarantined" and held["identities"][0]["patient"]["name"] == "MARTIN^PAUL"
    assert held["identities"][0]["count"] == 2
    view = relais.view_study(dossier_id=did, actor_id=world["recipient"], study_uid=STUDY)
    assert sorted(view.instances) == [f"{STUDY}.9.{i}" for i in range(3)]  # kept, never shown in this dossier
    assert sum(s.count for s in view.series) == 3
    assert relais.repository.get(sid).instance_count == 5  # kept and listed for the establishment
    # a study attached by hand (not awaited) is checked the same way
    other = "1.2.250.1.77.2"
    sid2 = record(relais, world, instances(DUPONT, 0, 1, "ACC78", other))
    relais.attach_received_study(dossier_id=did, actor_id=world["requester"], study_id=sid2)
    record(relais, world, instances(MARTIN, 5, 1, "ACC78", other))
    relais.check_attached(study_id=sid2, dossier_ids=[did])
    d = relais.get_dossier(dossier_id=did, actor_id=world["requester"])
    assert [h["study_instance_uid"] for h in d.imaging_held] == [STUDY, other]
    assert list(relais.view_study(dossier_id=did, actor_id=world["recipient"], study_uid=other).instances) == [f"{other}.9.0"]


def _as_v1(relais: Relais, stored, drop: list[str], instances_without_pid: bool = False):
    """A stored event as it was written before identities: v1, without the fields `drop`."""
    from dataclasses import replace

    state = relais.mapper.transcoder.decode(relais.mapper.compressor.decompress(stored.state)
                                            if relais.mapper.compressor else stored.state)
    for key in drop:
        state.pop(key, None)
    state.pop("class_version", None)
    if instances_without_pid:
        state["instances"] = [{k: v for k, v in i.items() if k != "pid"} for i in state["instances"]]
    data = relais.mapper.transcoder.encode(state)
    return replace(stored, state=relais.mapper.compressor.compress(data) if relais.mapper.compressor else data)


def test_events_written_before_identities_still_load(relais: Relais, world: dict, sent_dossier: dict) -> None:
    """ImagingAttached v1 (no override) and InstancesReceived v1 (no identities, no pid) are upcast."""
    if relais.mapper.cipher is not None:
        pytest.skip("payloads encrypted in this configuration")
    sid = record(relais, world, instances(DUPONT, 0, 2))
    did = sent_dossier["dossier_id"]
    relais.attach_received_study(dossier_id=did, actor_id=world["requester"], study_id=sid)
    (received,) = [s for s in relais.recorder.select_events(UUID(sid)) if s.topic.endswith("InstancesReceived")]
    old = relais.mapper.to_domain_event(_as_v1(relais, received, ["identities"], instances_without_pid=True))
    assert old.identities == {} and "pid" not in old.instances[0]
    (attached,) = [s for s in relais.recorder.select_events(UUID(did)) if s.topic.endswith("ImagingAttached")]
    old_attached = relais.mapper.to_domain_event(_as_v1(relais, attached, ["override"]))
    assert old_attached.override is None
    # a study rebuilt from v1 events: its instances are its first patient's, accepted by an old attachment
    study = ReceivedStudy.__new__(ReceivedStudy)
    for e in [relais.mapper.to_domain_event(s) for s in relais.recorder.select_events(UUID(sid))
              if not s.topic.endswith("InstancesReceived")] + [old]:
        study = e.mutate(study if e.originator_version > 1 else None)
    assert study.identities == {identity_key(DUPONT): dict(DUPONT)}
    from domain.imaging import attached_instances

    assert len(attached_instances(study, {"study_instance_uid": STUDY})) == 2


def test_a_dossier_reads_the_patient_it_accepted_not_the_studys_first(relais: Relais, world: dict, sent_dossier: dict) -> None:
    """A study first received for another patient, the dossier accepting only its own patient's images:
    the viewer and DICOMweb name the dossier's patient (the study's first instance named before)."""
    sid = record(relais, world, instances(MARTIN, 0, 1) + instances(DUPONT, 1, 2))
    did = sent_dossier["dossier_id"]
    relais.attach_received_study(dossier_id=did, actor_id=world["requester"], study_id=sid, identities=[identity_key(DUPONT)])
    view = relais.view_study(dossier_id=did, actor_id=world["recipient"], study_uid=STUDY)
    assert (view.patient_name, view.patient_id, view.patient_sex) == ("DUPONT^JEANNE", "P123", "F")
    assert sorted(view.instances) == [f"{STUDY}.9.1", f"{STUDY}.9.2"]
