"""The Relais application: one eventsourcing store, the use-case areas composed on it, one facade."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import ClassVar, Concatenate, ParamSpec, TypeVar
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, MutableOrImmutableAggregate

from application.access import AccessUseCases
from application.access_log import AccessLog
from application.actors import Actors
from application.base import A, Core, utcnow
from application.commands import DossierCommands
from application.conversation import ConversationUseCases
from application.deadlines import DeadlineRules, DeadlineUseCases
from application.directory import DirectoryUseCases
from application.dossiers import DossierUseCases
from application.forms import FormUseCases
from application.history import HistoryUseCases
from application.imaging import ImagingUseCases
from application.mdt import MdtUseCases
from application.recipients import RecipientUseCases
from application.reports import ReportUseCases
from application.study_reads import StudyReadUseCases
from domain.dossier import Dossier

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def delegate(area: Callable[[Relais], T], method: Callable[Concatenate[T, P], R]) -> Callable[Concatenate[Relais, P], R]:
    """A method of the facade that calls `method` on one of its areas (same signature and docstring)."""

    @functools.wraps(method)
    def call(self: Relais, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(area(self), *args, **kwargs)

    return call


class Relais(Application[UUID]):
    """The whole platform's use cases on the `relais` event store.

    Each area is an object with its collaborators given explicitly (`relais.dossiers`,
    `relais.imaging`…); the facade's methods below only delegate, so that callers keep one object.
    """

    # Pinned: eventsourcing names tables and tracking rows after it, and would otherwise
    # take the class name; a rename must never start an empty store.
    name = "relais"
    snapshotting_intervals: ClassVar[dict[type[MutableOrImmutableAggregate[UUID]], int]] = {Dossier: 25}

    def __init__(self, env: dict[str, str] | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(env=env)
        self.core = Core(self, clock)
        self.actors = Actors(self.core)
        self.access_log = AccessLog(self.core)
        self.commands = DossierCommands(self.core, self.actors)
        self.directory = DirectoryUseCases(self.core, self.actors)
        self.deadline_rules = DeadlineRules(self.core)
        self.dossiers = DossierUseCases(self.core, self.actors, self.commands, self.deadline_rules)
        self.recipients = RecipientUseCases(self.commands, self.deadline_rules)
        self.deadlines = DeadlineUseCases(self.core, self.commands)
        self.access = AccessUseCases(self.core, self.actors, self.access_log)
        self.imaging = ImagingUseCases(self.core, self.actors, self.commands)
        self.studies = StudyReadUseCases(self.core, self.actors, self.access_log)
        self.history = HistoryUseCases(self.core)
        self.conversation = ConversationUseCases(self.commands)
        self.mdt = MdtUseCases(self.core, self.actors, self.access_log)
        self.reports = ReportUseCases(self.core, self.actors, self.access_log, self.commands)
        self.forms = FormUseCases(self.commands)

    # ------------------------------------------------------------------ the store

    @property
    def clock(self) -> Callable[[], datetime]:
        """Now, as the use cases see it (given at construction: tests pass a fixed clock)."""
        return self.core.clock

    def load(self, cls: type[A], aggregate_id: UUID | str, what: str, version: int | None = None) -> A:
        return self.core.load(cls, aggregate_id, what, version)

    def exists(self, aggregate_id: UUID) -> bool:
        return self.core.exists(aggregate_id)

    def commit(self, *aggregates: Aggregate) -> int | None:
        return self.core.commit(*aggregates)

    def max_position(self) -> int:
        return self.core.max_position()

    # ------------------------------------------------------------------ directory

    add_establishment = delegate(lambda r: r.directory, DirectoryUseCases.add_establishment)
    add_service = delegate(lambda r: r.directory, DirectoryUseCases.add_service)
    add_practitioner = delegate(lambda r: r.directory, DirectoryUseCases.add_practitioner)
    set_membership = delegate(lambda r: r.directory, DirectoryUseCases.set_membership)
    end_membership = delegate(lambda r: r.directory, DirectoryUseCases.end_membership)
    deactivate_practitioner = delegate(lambda r: r.directory, DirectoryUseCases.deactivate_practitioner)
    add_node = delegate(lambda r: r.directory, DirectoryUseCases.add_node)
    set_node_retrieve_method = delegate(lambda r: r.directory, DirectoryUseCases.set_node_retrieve_method)
    move_node = delegate(lambda r: r.directory, DirectoryUseCases.move_node)
    set_node_addresses = delegate(lambda r: r.directory, DirectoryUseCases.set_node_addresses)
    establishment = delegate(lambda r: r.directory, DirectoryUseCases.establishment)
    practitioner = delegate(lambda r: r.directory, DirectoryUseCases.practitioner)
    node = delegate(lambda r: r.directory, DirectoryUseCases.node)
    directory_ids = delegate(lambda r: r.directory, DirectoryUseCases.directory_ids)
    set_service_deadline = delegate(lambda r: r.directory, DirectoryUseCases.set_service_deadline)
    set_service_escalation = delegate(lambda r: r.directory, DirectoryUseCases.set_service_escalation)
    set_away = delegate(lambda r: r.directory, DirectoryUseCases.set_away)
    set_default_recipient = delegate(lambda r: r.directory, DirectoryUseCases.set_default_recipient)
    default_recipient = delegate(lambda r: r.directory, DirectoryUseCases.default_recipient)
    default_recipients = delegate(lambda r: r.directory, DirectoryUseCases.default_recipients)
    actor_for = delegate(lambda r: r.actors, Actors.actor_for)

    # ------------------------------------------------------------------ dossiers: requester, recipient

    create_dossier = delegate(lambda r: r.dossiers, DossierUseCases.create_dossier)
    edit_draft = delegate(lambda r: r.dossiers, DossierUseCases.edit_draft)
    record_consent = delegate(lambda r: r.dossiers, DossierUseCases.record_consent)
    attach_document = delegate(lambda r: r.dossiers, DossierUseCases.attach_document)
    remove_document = delegate(lambda r: r.dossiers, DossierUseCases.remove_document)
    attach_imaging = delegate(lambda r: r.dossiers, DossierUseCases.attach_imaging)
    address_recipient = delegate(lambda r: r.dossiers, DossierUseCases.address_recipient)
    remove_recipient = delegate(lambda r: r.dossiers, DossierUseCases.remove_recipient)
    send_dossier = delegate(lambda r: r.dossiers, DossierUseCases.send_dossier)
    provide_complement = delegate(lambda r: r.dossiers, DossierUseCases.provide_complement)
    close_dossier = delegate(lambda r: r.dossiers, DossierUseCases.close_dossier)
    cancel_dossier = delegate(lambda r: r.dossiers, DossierUseCases.cancel_dossier)
    get_dossier = delegate(lambda r: r.dossiers, DossierUseCases.get_dossier)
    version_seen = delegate(lambda r: r.dossiers, DossierUseCases.version_seen)
    dossier_history = delegate(lambda r: r.dossiers, DossierUseCases.dossier_history)

    accept = delegate(lambda r: r.recipients, RecipientUseCases.accept)
    decline = delegate(lambda r: r.recipients, RecipientUseCases.decline)
    request_complement = delegate(lambda r: r.recipients, RecipientUseCases.request_complement)
    forward = delegate(lambda r: r.recipients, RecipientUseCases.forward)
    give_opinion = delegate(lambda r: r.recipients, RecipientUseCases.give_opinion)
    may_forward = delegate(lambda r: r.recipients, RecipientUseCases.may_forward)

    # ------------------------------------------------------------------ after sending: thread, milestones, receipt, report

    post_message = delegate(lambda r: r.conversation, ConversationUseCases.post_message)
    answer_complement = delegate(lambda r: r.conversation, ConversationUseCases.answer_complement)
    record_milestone = delegate(lambda r: r.conversation, ConversationUseCases.record_milestone)
    acknowledge_receipt = delegate(lambda r: r.conversation, ConversationUseCases.acknowledge_receipt)
    issue_report = delegate(lambda r: r.conversation, ConversationUseCases.issue_report)
    report_material = delegate(lambda r: r.reports, ReportUseCases.report_material)
    reports_due = delegate(lambda r: r.reports, ReportUseCases.reports_due)
    record_report = delegate(lambda r: r.reports, ReportUseCases.record_report)
    open_report = delegate(lambda r: r.reports, ReportUseCases.open_report)
    answer_form = delegate(lambda r: r.forms, FormUseCases.answer_form)

    # ------------------------------------------------------------------ MDT sessions (RCP)

    schedule_mdt_session = delegate(lambda r: r.mdt, MdtUseCases.schedule_session)
    reschedule_mdt_session = delegate(lambda r: r.mdt, MdtUseCases.reschedule_session)
    cancel_mdt_session = delegate(lambda r: r.mdt, MdtUseCases.cancel_session)
    register_mdt_dossier = delegate(lambda r: r.mdt, MdtUseCases.register_dossier)
    withdraw_mdt_dossier = delegate(lambda r: r.mdt, MdtUseCases.withdraw_dossier)
    record_mdt_attendance = delegate(lambda r: r.mdt, MdtUseCases.record_attendance)
    record_mdt_decision = delegate(lambda r: r.mdt, MdtUseCases.record_decision)
    mdt_session = delegate(lambda r: r.mdt, MdtUseCases.mdt_session)

    # ------------------------------------------------------------------ deadlines (the scheduler)

    escalate_overdue = delegate(lambda r: r.deadlines, DeadlineUseCases.escalate_overdue)
    escalation_target = delegate(lambda r: r.deadlines, DeadlineUseCases.escalation_target)

    # ------------------------------------------------------------------ traced reads, access log

    open_dossier = delegate(lambda r: r.access, AccessUseCases.open_dossier)
    dossier_at = delegate(lambda r: r.access, AccessUseCases.dossier_at)
    audit_trail = delegate(lambda r: r.access, AccessUseCases.audit_trail)
    may_read_now = delegate(lambda r: r.access, AccessUseCases.may_read_now)
    record_access = delegate(lambda r: r.access_log, AccessLog.record_access)
    trace_denied = delegate(lambda r: r.access_log, AccessLog.trace_denied)
    trace_refusal = delegate(lambda r: r.access_log, AccessLog.trace_refusal)

    # ------------------------------------------------------------------ imaging

    record_received = delegate(lambda r: r.imaging, ImagingUseCases.record_received)
    await_imaging = delegate(lambda r: r.imaging, ImagingUseCases.await_imaging)
    attach_received_study = delegate(lambda r: r.imaging, ImagingUseCases.attach_received_study)
    auto_attach = delegate(lambda r: r.imaging, ImagingUseCases.auto_attach)
    check_attached = delegate(lambda r: r.imaging, ImagingUseCases.check_attached)
    identity_check = delegate(lambda r: r.imaging, ImagingUseCases.identity_check)
    requester_actor = delegate(lambda r: r.imaging, ImagingUseCases.requester_actor)
    pacs_for = delegate(lambda r: r.imaging, ImagingUseCases.pacs_for)
    record_retrieve = delegate(lambda r: r.imaging, ImagingUseCases.record_retrieve)
    attach_retrieved = delegate(lambda r: r.imaging, ImagingUseCases.attach_retrieved)

    view_study = delegate(lambda r: r.studies, StudyReadUseCases.view_study)
    received_study_view = delegate(lambda r: r.studies, StudyReadUseCases.received_study_view)
    download_study = delegate(lambda r: r.studies, StudyReadUseCases.download_study)
    export_target = delegate(lambda r: r.studies, StudyReadUseCases.export_target)
    record_export = delegate(lambda r: r.studies, StudyReadUseCases.record_export)

    @property
    def imaging_read_window(self) -> float:
        """Seconds during which a user's second granted read of a study is not traced again (60)."""
        return self.studies.read_window

    @imaging_read_window.setter
    def imaging_read_window(self, seconds: float) -> None:
        self.studies.read_window = seconds

    @imaging_read_window.deleter
    def imaging_read_window(self) -> None:  # back to the default
        self.studies.read_window = StudyReadUseCases.read_window

    # ------------------------------------------------------------------ history import

    establishment_departments = delegate(lambda r: r.history, HistoryUseCases.establishment_departments)
    add_imported_establishments = delegate(lambda r: r.history, HistoryUseCases.add_imported_establishments)
    imported_digests = delegate(lambda r: r.history, HistoryUseCases.imported_digests)
    legacy_dossier = delegate(lambda r: r.history, HistoryUseCases.legacy_dossier)
    prepare_legacy_dossiers = delegate(lambda r: r.history, HistoryUseCases.prepare_legacy_dossiers)
    save_prepared = delegate(lambda r: r.history, HistoryUseCases.save_prepared)
    import_legacy_dossiers = delegate(lambda r: r.history, HistoryUseCases.import_legacy_dossiers)
    import_legacy_dossier = delegate(lambda r: r.history, HistoryUseCases.import_legacy_dossier)
