"""`relais directory set-default-recipient | defaults`: where each establishment's requests of a workflow
are addressed by default (the compose page presets it)."""

from __future__ import annotations

import argparse

from adapters.settings import Settings
from application import Relais
from domain.directory import practitioner_id
from domain.identifiers import check_rpps
from domain.values import WORKFLOW_LABELS, Json, Workflow
from entrypoints.bootstrap import open_app
from entrypoints.cli.common import CommandError, with_db

WORKFLOWS = [str(w) for w in Workflow if w != Workflow.LEGACY]


def describe(app: Relais, target: Json) -> str:
    """« CHU de Toulouse — Astreinte neurovasculaire — Sophie Bernard » for a target."""
    est = app.establishment(establishment_id=target["establishment_id"])
    parts = [est.name]
    service = next((s for s in est.services if s["service_id"] == target.get("service_id")), None)
    if service is not None:
        parts.append(service["name"] + (" (astreinte)" if service["kind"] == "on_call_pool" else ""))
    if target.get("practitioner_id"):
        p = app.practitioner(practitioner_id=target["practitioner_id"])
        parts.append(f"{p.given_name} {p.family_name}".strip())
    return " — ".join(parts)


@with_db
def cmd_set_default_recipient(args: argparse.Namespace, settings: Settings) -> int:
    if args.none and (args.to_establishment or args.to_service or args.to_practitioner):
        raise CommandError("--none seul, ou un destinataire (--to-establishment …)")
    if not args.none and not args.to_establishment:
        raise CommandError("--to-establishment (ou --none pour retirer le destinataire par défaut)")
    with open_app(settings) as app:
        est = app.establishment(finess=args.establishment)
        to = app.establishment(finess=args.to_establishment) if args.to_establishment else None
        pid = str(practitioner_id(check_rpps(args.to_practitioner))) if args.to_practitioner else None
        app.set_default_recipient(
            establishment_id=est.id, workflow=args.workflow, to_establishment_id=to.id if to else None,
            to_service_code=args.to_service, to_practitioner_id=pid,
        )
        target = app.default_recipient(est.id, args.workflow)
        label = WORKFLOW_LABELS[Workflow(args.workflow)]
        print(f"{label} depuis {est.name} : " + (describe(app, target) if target else "pas de destinataire par défaut"))
    return 0


@with_db
def cmd_defaults(args: argparse.Namespace, settings: Settings) -> int:
    with open_app(settings) as app:
        if args.establishment:
            ids = [app.establishment(finess=args.establishment).id]
        else:
            ids = [str(i) for i in app.directory_ids()["establishments"]]
        rows = []
        for eid in ids:
            est = app.establishment(establishment_id=eid)
            for workflow, target in sorted(app.default_recipients(establishment_id=eid).items()):
                rows.append((est.finess, est.name, WORKFLOW_LABELS[Workflow(workflow)], describe(app, target)))
    if not rows:
        print("aucun destinataire par défaut")
        return 0
    print(f"{'FINESS':<10} {'établissement':<32} {'parcours':<34} destinataire par défaut")
    for finess, name, label, shown in sorted(rows):
        print(f"{finess:<10} {name[:32]:<32} {label:<34} {shown}")
    return 0


def register(d: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the commands to `relais directory`."""
    p = d.add_parser("set-default-recipient",
                     help="destinataire proposé par défaut pour un parcours, depuis un établissement demandeur")
    p.add_argument("--establishment", required=True, metavar="FINESS", help="l'établissement demandeur")
    p.add_argument("--workflow", required=True, choices=WORKFLOWS)
    p.add_argument("--to-establishment", metavar="FINESS", help="l'établissement destinataire (peut être un autre)")
    p.add_argument("--to-service", metavar="CODE", help="un service, une équipe ou une astreinte de celui-ci")
    p.add_argument("--to-practitioner", metavar="RPPS", help="un professionnel qui y exerce")
    p.add_argument("--none", action="store_true", help="retire le destinataire par défaut")
    p.set_defaults(func=cmd_set_default_recipient)
    p = d.add_parser("defaults", help="destinataires par défaut par établissement et parcours")
    p.add_argument("--establishment", metavar="FINESS")
    p.set_defaults(func=cmd_defaults)
