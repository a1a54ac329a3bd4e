"""What a web process's pages are given: the application, pools, views, stores and jobs, built by
`entrypoints/bootstrap.py` (nothing here builds anything)."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.stores.base import Store

from adapters.blobs import BlobStore
from adapters.credentials import Credentials
from adapters.database import DictPool
from adapters.dicom.storage import InstanceStore
from adapters.jobs import Jobs
from adapters.live import LiveFeed
from adapters.notification_prefs import PreferenceStore
from adapters.settings import Settings
from application import Relais
from projections.access import PostgresAccessView
from projections.directory import PostgresDirectoryView
from projections.imaging import PostgresImagingView
from projections.inbox import PostgresInboxView
from projections.mdt import PostgresMdtView
from projections.milestones import PostgresMilestonesView
from projections.notification_centre import NotificationCentre
from projections.statistics import PostgresStatisticsView
from web.authentication import Authenticator
from web.names import Names


@dataclass(frozen=True)
class ImagingServices:
    """What the imaging pages and DICOMweb need: the received studies' view, the directory's DICOM
    nodes, the instance files, the retrieve/export jobs and the platform's AE title."""

    studies: PostgresImagingView
    directory: PostgresDirectoryView
    store: InstanceStore
    jobs: Jobs
    our_aet: str


@dataclass(frozen=True)
class Services:
    settings: Settings
    relais: Relais
    pool: DictPool
    credentials: Credentials
    authenticator: Authenticator
    inbox: PostgresInboxView
    access_log: PostgresAccessView
    names: Names
    statistics: PostgresStatisticsView
    blobs: BlobStore
    imaging: ImagingServices
    session_store: Store
    live: LiveFeed  # the inbox projection's notifications (the app starts it)
    notifications: NotificationCentre  # the in-app notification centre (bell, list, marking read)
    notification_feed: LiveFeed  # NOTIFY relais_notifications: new notifications, for the bell (the app starts it)
    preferences: PreferenceStore  # each practitioner's notification preferences (the web reads sound, desktop)
    mdt: PostgresMdtView  # MDT sessions and their agenda (read on the pool)
    milestones: PostgresMilestonesView  # times of care and the stroke indicators (read on the pool)

    async def close(self) -> None:
        """Closes what was built for the process (the web app calls it when it shuts down)."""
        await self.live.close()
        await self.notification_feed.close()
        self.imaging.jobs.close()
        for view in (self.imaging.studies, self.imaging.directory, self.inbox, self.access_log):
            view.datastore.close()
        self.pool.close()
        self.relais.close()
        await self.session_store.__aexit__(None, None, None)
