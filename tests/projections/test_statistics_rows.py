"""The statistics batch rows name the tables' columns, with their PostgreSQL types."""

from __future__ import annotations

import psycopg

from projections.statistics_rows import COLUMNS, NewDossier, NewEstablishment, NewSend

TABLES = {NewEstablishment: "stats_establishments", NewDossier: "stats_dossiers", NewSend: "stats_sends"}
UDT = {
    "uuid": "uuid", "text": "text", "bool": "bool", "timestamptz": "timestamptz", "date": "date",
    "timestamptz[]": "_timestamptz",
}


def test_each_row_class_is_its_table(database_url: str):
    with psycopg.connect(database_url) as conn:
        for row_class, table in TABLES.items():
            columns = conn.execute(
                "SELECT column_name, udt_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
                (table,),
            ).fetchall()
            copied = COLUMNS[row_class]
            assert sorted(zip(copied.names, (UDT[t] for t in copied.types), strict=True)) == sorted(columns), table
