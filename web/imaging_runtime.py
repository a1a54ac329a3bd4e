"""What the imaging pages need beyond the shared services (views, store, jobs), built once per web process."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from litestar import Request

from adapters.dicom.export import Exporter
from adapters.dicom.node import dicom_root, small_pool_env
from adapters.dicom.retrieve import Retriever
from adapters.dicom.storage import InstanceStore
from adapters.jobs import ArqJobs, InlineJobs, register_all
from projections.directory import PostgresDirectoryView
from projections.imaging import PostgresImagingView
from projections.runner import open_view
from web.services import Services


@dataclass
class ImagingWeb:
    """What the imaging pages need beyond the shared services, built once per web process from Settings."""

    imaging: PostgresImagingView
    directory: PostgresDirectoryView
    store: InstanceStore
    jobs: Any
    our_aet: str

    async def close(self) -> None:
        self.jobs.close()
        self.imaging.datastore.close()
        self.directory.datastore.close()


_lock = threading.Lock()


def imaging_web(request: Request) -> ImagingWeb:
    state = request.app.state
    if getattr(state, "imaging_web", None) is None:
        with _lock:
            if getattr(state, "imaging_web", None) is None:
                services: Services = state.services
                settings = services.settings
                env = small_pool_env(settings)
                register_all()
                if settings.redis_url:
                    jobs: Any = ArqJobs(settings.redis_url)
                else:  # in-process jobs share the web's application (and its connections)
                    store = InstanceStore(dicom_root(settings))
                    jobs = InlineJobs({
                        "retriever": Retriever(app=services.relais, store=store, our_aet=settings.dicom_aet),
                        "exporter": Exporter(app=services.relais, store=store, our_aet=settings.dicom_aet),
                    })
                state.imaging_web = ImagingWeb(
                    imaging=open_view("imaging", env), directory=open_view("directory", env),  # type: ignore[arg-type]
                    store=InstanceStore(dicom_root(settings)), jobs=jobs, our_aet=settings.dicom_aet,
                )
                request.app.on_shutdown.append(state.imaging_web.close)
    return state.imaging_web


