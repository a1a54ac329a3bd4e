"""Event topics are pinned: stored events must outlive class names for 20 years.

Adding an event means adding its topic here on purpose; renaming one must fail this test.
"""

from __future__ import annotations

from datetime import UTC

import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic, resolve_topic

from domain.access import Access
from domain.directory import DicomNode, Establishment, Practitioner
from domain.dossier import Dossier
from domain.imaging import ReceivedStudy
from domain.mdt import MdtSession

AGGREGATES = {
    "relais:Dossier": Dossier,
    "relais:Establishment": Establishment,
    "relais:Practitioner": Practitioner,
    "relais:DicomNode": DicomNode,
    "relais:Access": Access,
    "relais:ReceivedStudy": ReceivedStudy,
    "relais:MdtSession": MdtSession,
}

EXPECTED_EVENT_TOPICS = {
    # Dossier
    "relais:Dossier.Created",
    "relais:Dossier.DraftEdited",
    "relais:Dossier.ConsentRecorded",
    "relais:Dossier.DocumentAttached",
    "relais:Dossier.DocumentRemoved",
    "relais:Dossier.ImagingAttached",
    "relais:Dossier.ImagingDetached",
    "relais:Dossier.ImagingAwaited",
    "relais:Dossier.ImagingHeld",
    "relais:Dossier.RecipientAddressed",
    "relais:Dossier.RecipientRemoved",
    "relais:Dossier.Escalated",
    "relais:Dossier.Sent",
    "relais:Dossier.ComplementProvided",
    "relais:Dossier.Closed",
    "relais:Dossier.Cancelled",
    "relais:Dossier.Accepted",
    "relais:Dossier.Declined",
    "relais:Dossier.ComplementRequested",
    "relais:Dossier.Forwarded",
    "relais:Dossier.OpinionGiven",
    "relais:Dossier.FormAnswered",
    "relais:Dossier.MilestoneRecorded",
    "relais:Dossier.MessagePosted",
    "relais:Dossier.ReceiptAcknowledged",
    "relais:Dossier.ReportIssued",
    # Establishment
    "relais:Establishment.Created",
    "relais:Establishment.Renamed",
    "relais:Establishment.ServiceAdded",
    "relais:Establishment.ServiceDeadlineSet",
    "relais:Establishment.DefaultRecipientSet",
    "relais:Establishment.ServiceEscalationSet",
    # Practitioner
    "relais:Practitioner.Created",
    "relais:Practitioner.MembershipSet",
    "relais:Practitioner.MembershipEnded",
    "relais:Practitioner.Deactivated",
    "relais:Practitioner.AwaySet",
    # DicomNode
    "relais:DicomNode.Created",
    "relais:DicomNode.Moved",
    "relais:DicomNode.CallingAddressesSet",
    "relais:DicomNode.RetrieveMethodSet",
    # Access (one stream per view of patient data)
    "relais:Access.Created",
    # ReceivedStudy (studies received by the DICOM node, retrieved or imported)
    "relais:ReceivedStudy.Created",
    "relais:ReceivedStudy.InstancesReceived",
    "relais:ReceivedStudy.RetrieveRecorded",
    "relais:ReceivedStudy.Downloaded",
    "relais:ReceivedStudy.ExportRecorded",
    # MdtSession (a kidney-transplant MDT meeting: agenda, attendance, decisions; Created = scheduled)
    "relais:MdtSession.Created",
    "relais:MdtSession.Rescheduled",
    "relais:MdtSession.DossierRegistered",
    "relais:MdtSession.DossierWithdrawn",
    "relais:MdtSession.AttendanceRecorded",
    "relais:MdtSession.DecisionRecorded",
    "relais:MdtSession.Cancelled",
}


def event_classes(aggregate: type[Aggregate]) -> dict[str, type]:
    """Every concrete event class on the aggregate (a TOPIC, subclassing the aggregate's Event)."""
    found = {}
    for name in dir(aggregate):
        value = getattr(aggregate, name)
        if isinstance(value, type) and issubclass(value, aggregate.Event) and getattr(value, "TOPIC", None):
            found[name] = value
    return found


def all_event_classes() -> list[type]:
    return [cls for agg in AGGREGATES.values() for cls in event_classes(agg).values()]


def test_event_topics_are_exactly_the_pinned_list():
    topics = [get_topic(cls) for cls in all_event_classes()]
    assert len(topics) == len(set(topics)), "two event classes share a topic"
    assert set(topics) == EXPECTED_EVENT_TOPICS


def test_every_event_class_declares_its_topic():
    for cls in all_event_classes():
        assert cls.TOPIC == get_topic(cls)
        assert cls.TOPIC.startswith("relais:")


@pytest.mark.parametrize("topic", sorted(EXPECTED_EVENT_TOPICS))
def test_event_topic_resolves_to_the_class(topic):
    aggregate_topic, _, event_name = topic.partition(".")
    aggregate = AGGREGATES[aggregate_topic]
    cls = resolve_topic(topic)
    assert cls is getattr(aggregate, event_name)
    assert issubclass(cls, aggregate.Event)
    assert get_topic(cls) == topic


@pytest.mark.parametrize("topic", sorted(AGGREGATES))
def test_aggregate_topics_are_pinned(topic):
    aggregate = AGGREGATES[topic]
    assert aggregate.TOPIC == topic
    assert get_topic(aggregate) == topic
    assert resolve_topic(topic) is aggregate


def test_created_events_are_pinned_too():
    """The inherited Created must be pinned explicitly, not the library's module path."""
    for topic, aggregate in AGGREGATES.items():
        assert get_topic(aggregate.Created) == f"{topic}.Created"
        assert "domain." not in get_topic(aggregate.Created)


def test_created_event_records_the_pinned_aggregate_topic():
    dossier_created = event_classes(Dossier)["Created"]
    assert dossier_created is Dossier.Created
    # the originator_topic stored in a Created event is the aggregate's pinned topic
    from datetime import datetime

    d = Dossier(
        workflow="generic_opinion", requester={"establishment_id": "e", "practitioner_id": "p", "service_id": None},
        patient={}, question="?", urgency="routine", consent=None, imaging_source="none",
        actor={"practitioner_id": "p", "role": "clinician", "establishment_id": "e"},
        occurred_at=datetime(2025, 1, 1, tzinfo=UTC), imported_from=None,
    )
    (created,) = d.collect_events()
    assert type(created) is Dossier.Created
    assert created.originator_topic == "relais:Dossier"
