"""`relais db | projections | directory`: the database, the read models and the directory."""

from __future__ import annotations

import argparse
import json
import sys

from adapters.credentials import MIN_LENGTH, Credentials, WeakPasswordError
from adapters.settings import Settings
from entrypoints import projections as projections_process
from entrypoints.bootstrap import build_pool, open_app, open_view_as, upgrade
from entrypoints.cli import deadlines as deadline_commands
from entrypoints.cli import recipients as recipient_commands
from entrypoints.cli.common import CommandError, stop_on_signals, with_db
from projections.directory import PostgresDirectoryView
from projections.runner import catch_up, rebuild, status


@with_db
def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    for table in upgrade(settings):
        print(f"ok  {table}")
    return 0


@with_db
def cmd_projections_run(args: argparse.Namespace, settings: Settings) -> int:
    projections_process.run(settings, args.names, stop_on_signals())
    return 0


@with_db
def cmd_projections_status(args: argparse.Namespace, settings: Settings) -> int:
    with open_app(settings) as app:
        rows = status(app, settings.eventsourcing_env())
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
        return 0
    print(f"{'projection':<16} {'position':>10} {'journal':>10} {'retard':>8}")
    for r in rows:
        print(f"{r.name:<16} {r.position:>10} {r.head:>10} {r.lag:>8}")
    return 0


@with_db
def cmd_projections_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    with open_app(settings) as app:
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


@with_db
def cmd_add_establishment(args: argparse.Namespace, settings: Settings) -> int:
    with open_app(settings) as app:
        eid = app.add_establishment(finess=args.finess, name=args.name, department=args.department, region=args.region)
    print(f"établissement ajouté : {args.finess} ({eid})")
    return 0


@with_db
def cmd_add_service(args: argparse.Namespace, settings: Settings) -> int:
    with open_app(settings) as app:
        est = app.establishment(finess=args.establishment)
        sid = app.add_service(establishment_id=est.id, code=args.code, name=args.name, specialty=args.specialty, kind=args.kind)
    print(f"service ajouté : {args.code} dans {est.name} ({sid})")
    return 0


@with_db
def cmd_add_practitioner(args: argparse.Namespace, settings: Settings) -> int:
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if len(password) < MIN_LENGTH:  # checked before anything is recorded
            raise CommandError(f"mot de passe trop court ({MIN_LENGTH} caractères minimum)")
    with open_app(settings) as app:
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


@with_db
def cmd_add_node(args: argparse.Namespace, settings: Settings) -> int:
    with open_app(settings) as app:
        est = app.establishment(finess=args.establishment)
        nid = app.add_node(
            aet=args.aet, host=args.host, port=args.port, establishment_id=est.id, kind=args.kind,
            addresses=args.address, unverified=args.unverified,
        )
    print(f"nœud DICOM ajouté : {args.aet} ({nid}) — {_callers(args.host, args.address, args.unverified)}")
    return 0


def _callers(host: str, addresses: list[str] | tuple[str, ...], unverified: bool) -> str:
    """Where a node may call from, as said to the administrator."""
    if unverified:
        return "appels admis de toute adresse (adresse non vérifiée)"
    return "appels admis depuis " + ", ".join(dict.fromkeys([host, *addresses]))


@with_db
def cmd_move_node(args: argparse.Namespace, settings: Settings) -> int:
    with open_app(settings) as app:
        app.move_node(aet=args.aet, host=args.host, port=args.port)
        node = app.node(aet=args.aet)
    print(f"nœud DICOM {node.aet} : {node.host}:{node.port} — {_callers(node.host, node.addresses, node.unverified)}")
    return 0


@with_db
def cmd_set_node_addresses(args: argparse.Namespace, settings: Settings) -> int:
    with open_app(settings) as app:
        app.set_node_addresses(aet=args.aet, addresses=args.address, unverified=args.unverified)
        node = app.node(aet=args.aet)
    print(f"nœud DICOM {node.aet} : {_callers(node.host, node.addresses, node.unverified)}")
    return 0


@with_db
def cmd_directory_list(args: argparse.Namespace, settings: Settings) -> int:
    env = settings.eventsourcing_env()
    with open_app(settings) as app:
        catch_up("directory", env, app, timeout=60)
    view = open_view_as(PostgresDirectoryView, "directory", env)
    ests, pracs, nodes = view.establishments(), view.practitioners(), view.nodes()
    if args.json:
        print(json.dumps({
            "establishments": [e.__dict__ for e in ests],
            "practitioners": [dict(p.__dict__, roles=list(p.roles)) for p in pracs],
            "nodes": [dict(n.__dict__, addresses=list(n.addresses)) for n in nodes],
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
        print(f"  {n.aet:<16} {n.kind:<8} {n.host}:{n.port}  {n.establishment_finess}  "
              f"{_callers(n.host, n.addresses, n.unverified)}")
    return 0


def _caller_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address", action="append", default=[], metavar="ADRESSE",
        help="adresse IP, réseau (10.0.0.0/24) ou nom d'hôte depuis lequel le nœud appelle, en plus de --host (répétable)",
    )
    p.add_argument(
        "--unverified", action="store_true",
        help="adresse non vérifiée : appels admis de toute adresse (passerelle derrière une traduction d'adresses)",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    _caller_arguments(p)
    p.set_defaults(func=cmd_add_node)
    p = d.add_parser("move-node", help="change l'adresse et le port d'un nœud DICOM")
    p.add_argument("--aet", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True, type=int)
    p.set_defaults(func=cmd_move_node)
    p = d.add_parser("set-node-addresses", help="adresses depuis lesquelles un nœud DICOM peut appeler (remplace la liste)")
    p.add_argument("--aet", required=True)
    _caller_arguments(p)
    p.set_defaults(func=cmd_set_node_addresses)
    p = d.add_parser("list", help="liste l'annuaire")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_directory_list)
    deadline_commands.register(d)
    recipient_commands.register(d)
