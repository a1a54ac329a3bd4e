"""The demo's requester establishments have the region's on-call pools as default recipients, found by « AVC »."""

from __future__ import annotations

from adapters import demo
from adapters.credentials import Credentials
from adapters.settings import Settings
from application import Relais
from entrypoints.bootstrap import build_pool, upgrade
from projections.directory import PostgresDirectoryView
from projections.runner import catch_up
from web.names import Names


def test_demo_defaults_and_search(relais: Relais, settings: Settings) -> None:
    upgrade(settings)
    pool = build_pool(settings, max_size=2)
    try:
        demo.load(relais, Credentials(pool), relais.clock())
        demo.load(relais, Credentials(pool), relais.clock())  # idempotent: a second start adds nothing
        rodez = relais.establishment(finess=demo.ESTABLISHMENTS[3][0])
        tlse, mtp = relais.establishment(finess="310781406"), relais.establishment(finess="340780477")
        pool_of = {(s["code"]): s for e in (tlse, mtp) for s in e.services}
        stroke = relais.default_recipient(rodez.id, "stroke_opinion")
        emergency = relais.default_recipient(rodez.id, "emergency_opinion")
        assert stroke == {"establishment_id": tlse.id, "service_id": pool_of["unv"]["service_id"], "practitioner_id": None}
        assert emergency is not None and emergency["establishment_id"] == mtp.id
        assert pool_of["astreinte-urgences"]["kind"] == pool_of["unv"]["kind"] == "on_call_pool"
        assert emergency["service_id"] == pool_of["astreinte-urgences"]["service_id"]
        assert relais.default_recipient(rodez.id, "generic_opinion") is None
        # the escalation demo's pool is still there
        assert pool_of["astreinte-nrx"]["kind"] == "on_call_pool"

        catch_up("directory", settings.eventsourcing_env(), relais)
        names = Names(PostgresDirectoryView.on_pool(pool, "directory"))
        first = names.search("AVC")[0]
        assert first["id"] == tlse.id and first["services"][0]["id"] == pool_of["unv"]["service_id"]
        assert names.search("urgences")[0]["services"][0]["id"] == pool_of["astreinte-urgences"]["service_id"]
    finally:
        pool.close()
