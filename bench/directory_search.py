"""How long the recipient search takes on a large regional directory (« AVC », « urgences », names…).

Fills a fresh database `relais_bench_directory_<pid>` (dropped at the end) with `--establishments`
establishments of 5 services each (one an on-call pool) and `--clinicians` clinicians, then times
`PostgresDirectoryView.search_hits` (what the compose and forward searches call) per query: mean of
`--runs` runs.

    .venv/bin/python bench/directory_search.py [--establishments 3000] [--clinicians 20000] [--server URL]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from projections.directory import PostgresDirectoryView  # noqa: E402

QUERIES = ("AVC", "urgences", "réa", "Centre hospitalier 12", "neuro toulouse", "NOM1234")


def fill(conn: psycopg.Connection, establishments: int, clinicians: int) -> None:
    for ddl in PostgresDirectoryView.ddl:
        conn.execute(ddl)
    conn.execute(
        """INSERT INTO dir_establishments SELECT gen_random_uuid(), lpad(g::text, 9, '0'), 'Centre hospitalier ' || g,
               lpad((g %% 95 + 1)::text, 2, '0'), 'OCC' FROM generate_series(1, %s) g""", (establishments,))
    conn.execute(
        """INSERT INTO dir_services (id, establishment_id, code, name, specialty, kind)
           SELECT gen_random_uuid(), e.id, 's' || k,
                  (ARRAY['Urgences', 'Astreinte neurovasculaire', 'Radiologie', 'Réanimation', 'Cardiologie'])[k],
                  (ARRAY['médecine d''urgence', 'neurologie', 'radiologie', 'anesthésie-réanimation', 'cardiologie'])[k],
                  CASE WHEN k = 2 THEN 'on_call_pool' ELSE 'service' END
           FROM dir_establishments e, generate_series(1, 5) k""")
    conn.execute(
        """INSERT INTO dir_practitioners SELECT gen_random_uuid(), lpad(g::text, 11, '0'), 'NOM' || g, 'Prénom',
               'physician', 'neurologie', '', true FROM generate_series(1, %s) g""", (clinicians,))
    conn.execute(
        """INSERT INTO dir_memberships SELECT p.id, e.id, '{clinician}', '{}'
           FROM (SELECT id, row_number() OVER () %% %s AS n FROM dir_practitioners) p
           JOIN (SELECT id, row_number() OVER () - 1 AS n FROM dir_establishments) e ON e.n = p.n""", (establishments,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--establishments", type=int, default=3000)
    parser.add_argument("--clinicians", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f}")
    name = f"relais_bench_directory_{os.getpid()}"
    with psycopg.connect(args.server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = args.server.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            fill(conn, args.establishments, args.clinicians)
        print(f"{args.establishments} establishments, {5 * args.establishments} services, {args.clinicians} clinicians")
        with ConnectionPool(url, min_size=1, max_size=1, open=True,
                            kwargs={"autocommit": True, "row_factory": dict_row}) as pool:
            view = PostgresDirectoryView.on_pool(pool, "directory")
            for q in QUERIES:
                start = time.perf_counter()
                for _ in range(args.runs):
                    hits = view.search_hits(q)
                ms = (time.perf_counter() - start) / args.runs * 1000
                print(f"  {q!r:<26} {len(hits):>4} hits  {ms:7.1f} ms")
    finally:
        with psycopg.connect(args.server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
