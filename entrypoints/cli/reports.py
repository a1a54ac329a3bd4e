"""`relais import-history | stats export`: the legacy history in, the region's statistics out."""

from __future__ import annotations

import argparse
import csv
import gc
import json
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from adapters.history_import import LegacyFileError, import_file, read_legacy_file, shown
from adapters.settings import Settings
from domain.cells import neutralise_formula
from domain.directory import establishment_id
from domain.identifiers import check_department, check_finess
from domain.values import PARIS, Workflow
from entrypoints.bootstrap import open_app, open_view_as
from entrypoints.cli.common import CommandError, with_db
from projections.milestones import PostgresMilestonesView, StrokeQuery, stroke_csv
from projections.runner import catch_up
from projections.statistics import PostgresStatisticsView
from projections.statistics_report import TABLES as STATS_TABLES
from projections.statistics_report import StatsQuery, build_report, table_rows, to_csv

STROKE = "stroke"  # --table stroke: the stroke indicators, from the milestones read model


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"date invalide « {value} » (AAAA-MM-JJ attendu)") from None


@with_db
def cmd_import_history(args: argparse.Namespace, settings: Settings) -> int:
    started = time.perf_counter()
    try:
        parsed = read_legacy_file(Path(args.file), encoding=args.encoding)
    except LegacyFileError as e:
        raise CommandError(f"{args.file} refusé, rien n'a été importé : {e}") from None
    if parsed.extra_columns:
        print(f"colonnes ignorées : {', '.join(shown(c) for c in parsed.extra_columns)}", file=sys.stderr)
    gc.collect()
    gc.freeze()  # the parsed rows stay alive all along: keep the collector off them
    valid_rows = sum(len(d.sends) for d in parsed.dossiers)
    try:
        with open_app(settings) as app, tqdm(
            total=valid_rows, unit=" lignes", desc="import" + (" (essai)" if args.dry_run else ""),
            file=sys.stderr, disable=True if args.quiet else None, mininterval=0.5,
        ) as bar:
            report = import_file(app, parsed, batch_size=args.batch, dry_run=args.dry_run, progress=bar.update)
    finally:
        gc.unfreeze()
    seconds = time.perf_counter() - started
    for warning in report.warnings:
        print(f"attention : {warning}", file=sys.stderr)
    for error in report.errors:
        print(f"refusé : {error}", file=sys.stderr)
    if args.errors:
        with open(args.errors, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["line", "dossier_id", "reason"])
            w.writerows(
                [e.line, neutralise_formula(e.shown_dossier_id), neutralise_formula(e.shown_reason)] for e in report.errors
            )
    refused_dossiers = len({e.dossier_id for e in report.errors})
    verb = "seraient importés" if args.dry_run else "importés"
    print(f"{shown(parsed.name)} : {report.rows} lignes, {report.dossiers + refused_dossiers} télédossiers "
          f"(séparateur « {parsed.delimiter} »), en {seconds:.1f} s")
    print(f"  {verb} : {report.imported} télédossiers ({report.imported_rows} envois, {report.events} événements"
          + (f", {report.events / seconds:,.0f} événements/s" if report.events and not args.dry_run else "") + ")")
    print(f"  déjà présents, identiques : {report.unchanged} télédossiers")
    if report.identical_rows:
        print(f"  lignes identiques : {report.identical_rows} (chacune importée comme un envoi, détail sur la sortie d'erreur)")
    if report.establishments_added:
        added = "à ajouter" if args.dry_run else "ajoutés"
        print(f"  établissements {added} à l'annuaire : {len(report.establishments_added)} "
              f"({', '.join(report.establishments_added[:10])}{' …' if len(report.establishments_added) > 10 else ''})")
    if report.errors:
        print(f"  refusés : {len(report.errors)} lignes ({refused_dossiers} télédossiers), détail sur la sortie d'erreur"
              + (f" et dans {args.errors}" if args.errors else ""))
        return 1
    return 0


@with_db
def cmd_stats_export(args: argparse.Namespace, settings: Settings) -> int:
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
    projection = "milestones" if args.table == STROKE else "statistics"
    with open_app(settings) as app:
        if query.establishment_id and not app.exists(query.establishment_id):
            raise CommandError(f"établissement FINESS {finess} inconnu de l'annuaire")
        if not args.no_catch_up:
            catch_up(projection, env, app, timeout=3600)
    if args.table == STROKE:
        return _stroke_export(args, query, env)
    view = open_view_as(PostgresStatisticsView, "statistics", {**env, "POSTGRES_POOL_SIZE": "1"})
    try:
        report = build_report(view, query)
    finally:
        view.datastore.close()
    if args.format == "json":
        print(json.dumps(report if not args.table else {args.table: _table(report, args.table)}, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(to_csv(report, args.table, excel=args.excel))
    return 0


def _stroke_export(args: argparse.Namespace, query: StatsQuery, env: dict[str, str]) -> int:
    """The stroke indicators (milestones read model): per month of sending, then the whole period."""
    view = open_view_as(PostgresMilestonesView, "milestones", {**env, "POSTGRES_POOL_SIZE": "1"})
    try:
        rows = view.stroke_indicators(StrokeQuery(
            date_from=query.date_from, date_to=query.date_to,
            requester_id=str(query.establishment_id) if query.establishment_id else None,
        ))
    finally:
        view.datastore.close()
    if args.format == "json":
        print(json.dumps({STROKE: rows}, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(stroke_csv(rows, excel=args.excel))
    return 0


def _table(report: dict[str, Any], table: str) -> list[dict[str, Any]]:
    try:
        return table_rows(report, table)
    except ValueError as e:
        raise CommandError(str(e)) from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("import-history", help="importe l'historique de l'ancienne plateforme (CSV, idempotent)")
    p.add_argument("file", metavar="FICHIER.csv")
    p.add_argument("--encoding", default="utf-8", help="encodage du fichier (défaut utf-8 ; cp1252 pour un CSV Excel Windows)")
    p.add_argument("--dry-run", action="store_true", help="vérifie tout sans rien enregistrer")
    p.add_argument("--errors", metavar="REFUS.csv", help="écrit aussi les lignes refusées dans ce fichier CSV")
    p.add_argument("--batch", type=int, default=500, help="télédossiers par transaction (défaut 500)")
    p.add_argument("--quiet", action="store_true", help="sans barre de progression")
    p.set_defaults(func=cmd_import_history)

    st = sub.add_parser("stats", help="statistiques régionales").add_subparsers(dest="stats_command", required=True, metavar="ACTION")
    p = st.add_parser("export", help="les tableaux de l'annexe et le respect des délais (deadlines) en JSON ou CSV")
    p.add_argument("--from", dest="date_from", type=_date, metavar="AAAA-MM-JJ", help="début (défaut : 1er janvier de l'année de --to)")
    p.add_argument("--to", type=_date, metavar="AAAA-MM-JJ", help="fin, incluse (défaut : aujourd'hui, Europe/Paris)")
    p.add_argument("--as-of", type=_date, metavar="AAAA-MM-JJ", help="les chiffres tels qu'enregistrés à la fin de ce jour")
    p.add_argument("--format", choices=["json", "csv"], default="json")
    p.add_argument("--establishment", metavar="FINESS", help="seulement les télédossiers de cet établissement")
    p.add_argument("--department", metavar="CODE", help="seulement les télédossiers de ce département")
    p.add_argument("--side", choices=["any", "requester", "recipient"], default="any",
                   help="côté regardé par --establishment/--department : requérant, requis ou l'un des deux (défaut)")
    p.add_argument("--workflow", choices=[w.value for w in Workflow], help="un seul workflow")
    p.add_argument("--table", choices=[*STATS_TABLES, STROKE],
                   help="un seul tableau (CSV : une colonne par champ) ; deadlines : délais tenus ou dépassés, escalades ; "
                        "stroke : indicateurs AVC par mois d'envoi (médianes porte→avis, envoi→avis, porte→envoi, "
                        "envoi→prise en charge ; filtres : période et --establishment requérant)")
    p.add_argument("--excel", action="store_true", help="CSV pour Excel en français : BOM, points-virgules, virgules décimales")
    p.add_argument("--no-catch-up", action="store_true", help="ne met pas la projection à jour avant d'exporter")
    p.set_defaults(func=cmd_stats_export)
