"""`relais directory set-deadline | set-escalation | set-away | deadlines`: answer deadlines per recipient
service, where late sends are escalated, and practitioners' absences."""

from __future__ import annotations

import argparse

from adapters.settings import Settings
from domain.deadlines import ANY_URGENCY, DEFAULT_DELAYS, delays_for, format_delay, parse_delay
from domain.directory import practitioner_id
from domain.identifiers import check_rpps
from domain.values import URGENCY_LABELS, WORKFLOW_LABELS, Urgency, Workflow
from entrypoints.bootstrap import open_app
from entrypoints.cli.common import CommandError, with_db


@with_db
def cmd_set_deadline(args: argparse.Namespace, settings: Settings) -> int:
    if args.default:
        accept = answer = 0
    else:
        if not (args.accept and args.answer):
            raise CommandError("--accept et --answer (ou --default pour revenir au tableau de la plateforme)")
        accept, answer = parse_delay(args.accept, "accept"), parse_delay(args.answer, "answer")
    with open_app(settings) as app:
        est = app.establishment(finess=args.establishment)
        app.set_service_deadline(
            establishment_id=est.id, service_code=args.service, workflow=args.workflow, urgency=args.urgency,
            accept_minutes=accept, answer_minutes=answer,
        )
    what = f"{args.workflow}/{args.urgency}"
    if args.default:
        print(f"délais de {args.service} ({est.name}) pour {what} : tableau de la plateforme")
    else:
        print(f"délais de {args.service} ({est.name}) pour {what} : prise en charge {format_delay(accept)}, "
              f"réponse {format_delay(answer)}")
    return 0


@with_db
def cmd_set_escalation(args: argparse.Namespace, settings: Settings) -> int:
    with open_app(settings) as app:
        est = app.establishment(finess=args.establishment)
        backup = str(practitioner_id(check_rpps(args.to_practitioner))) if args.to_practitioner else None
        app.set_service_escalation(
            establishment_id=est.id, service_code=args.service, to_service_code=args.to_service,
            to_practitioner_id=backup,
        )
    target = args.to_service or (
        f"RPPS {args.to_practitioner}" if args.to_practitioner else "règle par défaut (astreinte de même spécialité)"
    )
    print(f"escalade de {args.service} ({est.name}) : {target}")
    return 0


@with_db
def cmd_set_away(args: argparse.Namespace, settings: Settings) -> int:
    with open_app(settings) as app:
        pid = str(practitioner_id(check_rpps(args.rpps)))
        app.set_away(practitioner_id=pid, away=not args.back, until=args.until)
    print(f"RPPS {args.rpps} : " + ("de retour" if args.back else f"absent{' jusqu’au ' + args.until if args.until else ''}"))
    return 0


@with_db
def cmd_deadlines(args: argparse.Namespace, settings: Settings) -> int:
    overrides: dict[str, dict[str, int]] = {}
    if args.establishment:
        if not args.service:
            raise CommandError("--service avec --establishment")
        with open_app(settings) as app:
            est = app.establishment(finess=args.establishment)
        service = next((s for s in est.services if s["code"] == args.service), None)
        if service is None:
            raise CommandError(f"service inconnu : {args.service}")
        overrides = service.get("deadlines", {})
    print(f"{'parcours':<38} {'urgence':<17} {'prise en charge':>16} {'réponse':>9}  source")
    for workflow, table in DEFAULT_DELAYS.items():
        for urgency in table:
            found = delays_for(workflow, urgency, overrides)
            assert found is not None
            delays, source = found
            print(f"{WORKFLOW_LABELS[Workflow(workflow)]:<38} {URGENCY_LABELS[Urgency(urgency)]:<17} {format_delay(delays.accept):>16} "
                  f"{format_delay(delays.answer):>9}  {'service' if source == 'service' else 'plateforme'}")
    return 0


def register(d: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the commands to `relais directory`."""
    workflows = [str(w) for w in DEFAULT_DELAYS]
    p = d.add_parser("set-deadline", help="délais de prise en charge et de réponse d'un service destinataire")
    p.add_argument("--establishment", required=True, metavar="FINESS")
    p.add_argument("--service", required=True, metavar="CODE")
    p.add_argument("--workflow", required=True, choices=workflows)
    p.add_argument("--urgency", default=ANY_URGENCY, choices=[ANY_URGENCY, *[str(u) for u in URGENCY_LABELS]],
                   help="une urgence, ou * pour toutes (par défaut)")
    p.add_argument("--accept", help="délai de prise en charge : 30m, 2h, 7j")
    p.add_argument("--answer", help="délai de réponse : 30m, 2h, 7j")
    p.add_argument("--default", action="store_true", help="retire la valeur propre au service")
    p.set_defaults(func=cmd_set_deadline)
    p = d.add_parser("set-escalation", help="où escalader les envois d'un service non pris en charge à temps")
    p.add_argument("--establishment", required=True, metavar="FINESS")
    p.add_argument("--service", required=True, metavar="CODE")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--to-service", metavar="CODE", help="une astreinte ou une équipe du même établissement")
    target.add_argument("--to-practitioner", metavar="RPPS", help="un professionnel remplaçant")
    p.set_defaults(func=cmd_set_escalation)
    p = d.add_parser("set-away", help="absence d'un professionnel (son service est prévenu à sa place)")
    p.add_argument("--rpps", required=True)
    p.add_argument("--until", metavar="AAAA-MM-JJ")
    p.add_argument("--back", action="store_true", help="de retour")
    p.set_defaults(func=cmd_set_away)
    p = d.add_parser("deadlines", help="tableau des délais (de la plateforme, ou d'un service)")
    p.add_argument("--establishment", metavar="FINESS")
    p.add_argument("--service", metavar="CODE")
    p.set_defaults(func=cmd_deadlines)
