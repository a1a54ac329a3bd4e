"""A study's patient identities are in the order their instances arrived, whatever the process."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from domain.imaging import ReceivedStudy, identity_key

ACTOR = {"practitioner_id": "system", "establishment_id": "", "role": "system", "name": "DICOM"}


def test_identities_first_seen_in_one_batch_keep_the_order_of_their_instances() -> None:
    """Which identity a study (and a dossier accepting all of them) names first decides the patient shown
    (QIDO-RS's PatientSex, the viewer's banner): it must not depend on the process's string hashing. Many
    pairs, so that an order taken from a set fails with near certainty (each pair has one chance in two)."""
    now = datetime.now(UTC)
    for n in range(40):
        patients = [
            {"id": f"P{n}-{k}-{uuid4().hex[:6]}", "name": f"NOM{k}^PRENOM", "birth_date": "19500302", "sex": "F"}
            for k in range(3)
        ]
        study = ReceivedStudy(
            establishment_id=str(uuid4()), study_instance_uid=f"1.2.3.{n}", patient=dict(patients[0]), study={},
            actor=ACTOR, occurred_at=now,
        )
        keys = [identity_key(p) for p in patients]
        study.receive(
            instances=[
                {"sop": f"1.2.3.{n}.{k}", "series": "1.2.3.9", "class": "1.2.840.10008.5.1.4.1.1.2", "ts": "1.2.840.10008.1.2.1",
                 "number": k, "size": 1, "pid": keys[k]}
                for k in range(3)
            ],
            series={"1.2.3.9": {"modality": "CT"}}, source={"kind": "dicom_store"}, actor=ACTOR, occurred_at=now,
            identities=dict(zip(keys, patients, strict=True)),
        )
        assert list(study.identities) == keys, n
