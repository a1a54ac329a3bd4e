"""`relais up | serve | scp | worker | demo`: run the platform or one of its processes."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import threading
from typing import Any

from adapters import demo
from adapters import supervisor as sup
from adapters.credentials import Credentials
from adapters.database import database, redact
from adapters.settings import Settings
from application.base import utcnow
from entrypoints import dicom_node, scheduler, web, worker
from entrypoints.bootstrap import build_app, build_pool, upgrade
from entrypoints.cli.common import RELAIS_COMMAND, CommandError, stop_on_signals, with_db

log = logging.getLogger("relais")


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    try:  # before anything starts: a busy port is said at once, by its name
        sup.check_ports([
            ("HTTP", settings.http_host, settings.http_port, "RELAIS_HTTP_PORT"),
            ("DICOM", settings.dicom_host, settings.dicom_port, "RELAIS_DICOM_PORT"),
        ])
    except sup.PortUnavailableError as e:
        raise CommandError(str(e)) from None
    stop = threading.Event()
    sup.install_signal_handlers(stop)
    with database(settings) as resolved:
        upgrade(resolved)
        users = _load_demo(resolved) if args.demo else None
        web_child = sup.Child("web", ["serve"])
        children = [
            web_child,
            sup.Child("dicom", ["scp"]),
            sup.Child("projections", ["projections", "run"]),
            sup.Child("scheduler", ["scheduler"]),
        ]
        if resolved.redis_url:
            children.append(sup.Child("worker", ["worker"]))
        env = sup.child_env(os.environ, resolved.database_url or "", resolved.secret_key or secrets.token_urlsafe(48))
        supervisor = sup.Supervisor(children, env, RELAIS_COMMAND)
        supervisor.stop = stop
        supervisor.start()
        watcher = threading.Thread(target=supervisor.watch, daemon=True)
        watcher.start()
        url = f"http://{resolved.http_host}:{resolved.http_port}"
        web_pid = lambda: web_child.process.pid if web_child.process else None  # noqa: E731
        if sup.wait_healthy(url + "/health", timeout=120, stop=stop, pid=web_pid):  # ours, not whoever answers
            print(f"\nRelais est prêt : {url}/  (base : {redact(resolved.database_url or '')})", flush=True)
            print(f"Nœud DICOM : {resolved.dicom_aet}@{resolved.dicom_host}:{resolved.dicom_port}", flush=True)
            print("Tâches : " + ("arq sur Redis (relais worker)" if resolved.redis_url else "en processus (pas de Redis)"), flush=True)
            if users:
                print("\n" + demo.logins_table(users), flush=True)
            print("\nCtrl-C pour tout arrêter.", flush=True)
        elif not stop.is_set():
            log.error("le service web ne répond pas sur %s/health", url)
        stop.wait()
        supervisor.shutdown()
    print("Relais arrêté.", flush=True)
    if supervisor.failed:
        raise CommandError(supervisor.failed)
    return 0


def _load_demo(settings: Settings) -> list[Any]:
    relais = build_app(settings)
    pool = build_pool(settings, max_size=2)
    try:
        return demo.load(relais, Credentials(pool), utcnow())
    finally:
        pool.close()
        relais.close()


@with_db
def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    print(demo.logins_table(_load_demo(settings)))
    return 0


@with_db
def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    web.serve(settings)
    return 0


@with_db
def cmd_scp(args: argparse.Namespace, settings: Settings) -> int:
    try:
        failed = dicom_node.serve(settings, stop_on_signals(), RELAIS_COMMAND)
    except OSError as e:
        raise CommandError(
            f"nœud DICOM : écoute impossible sur {settings.dicom_host}:{settings.dicom_port} ({e.strerror})"
        ) from None
    if failed:
        raise CommandError(failed)
    return 0


@with_db
def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.redis_url:
        raise CommandError("relais worker a besoin de RELAIS_REDIS_URL (sans Redis, les tâches tournent dans chaque processus)")
    worker.run(settings)
    return 0


@with_db
def cmd_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    scheduler.run(settings, stop_on_signals())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up", help="toute la plateforme : web, nœud DICOM, projections, tâches")
    p.add_argument("--demo", action="store_true", help="charge l'annuaire et des dossiers de démonstration, affiche les identifiants")
    p.set_defaults(func=cmd_up)
    sub.add_parser("serve", help="le service web seul (port RELAIS_HTTP_PORT)").set_defaults(func=cmd_serve)
    sub.add_parser("scp", help="le nœud DICOM seul (port RELAIS_DICOM_PORT)").set_defaults(func=cmd_scp)
    sub.add_parser("worker", help="le worker de tâches arq (RELAIS_REDIS_URL requis)").set_defaults(func=cmd_worker)
    sub.add_parser(
        "scheduler", help="les échéances (rappels, escalades) et l'envoi des courriels de notification"
    ).set_defaults(func=cmd_scheduler)
    sub.add_parser("demo", help="charge les données de démonstration sans démarrer la plateforme").set_defaults(func=cmd_demo)
