"""Browser journeys: Debian's Chromium driven by Playwright, one browser per test module."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.settings import Settings
from entrypoints.bootstrap import upgrade
from tests.conftest import SERVER_URL
from tests.peers import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def launch(playwright_api: Any) -> Any:
    """Chromium as every journey runs it (headless, no sandbox, no GPU, no background networking)."""
    return playwright_api.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (scripts/system-packages.sh)")
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@contextmanager
def private_platform(prefix: str, data_dir: Path, secret: str, redis_url: str) -> Iterator[tuple[Settings, dict[str, str]]]:
    """A database of its own with every table, and the environment of a `relais serve` on it (a free port,
    sessions in Redis, a fixed secret, a data folder); the database is dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = SERVER_URL.rsplit("/", 1)[0] + "/" + name
    try:
        settings = Settings(database_url=url)
        upgrade(settings)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
        env.update(RELAIS_DATABASE_URL=url, RELAIS_HTTP_PORT=str(free_port()), RELAIS_REDIS_URL=redis_url,
                   RELAIS_SECRET_KEY=secret, RELAIS_TABLES_READY="1", RELAIS_DATA_DIR=str(data_dir),
                   RELAIS_LOG_LEVEL="WARNING")
        yield settings, env
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sign_in(browser: Any, base: str, login: str, password: str, viewport: dict[str, int] | None = None) -> tuple[Any, Any]:
    """A new browser context signed in at `base` (French locale, a laptop's viewport unless told):
    (context, page), the page on the landing page once its requests settled."""
    context = browser.new_context(base_url=base, locale="fr-FR", viewport=viewport or {"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/login")
    page.fill("#login", login)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    return context, page

