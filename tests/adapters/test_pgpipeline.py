"""psycopg's pipeline sync() sends all it queued before waiting (adapters/pgpipeline.py).

Each check runs in a subprocess with a timeout: without the fix, the client and the server
wait for each other forever."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import psycopg

from adapters.pgpipeline import FIXED_FOR, FlushingPipeline
from tests.conftest import SERVER_URL


def run(code: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout)


def test_written_for_the_pinned_psycopg():
    assert psycopg.__version__ == FIXED_FOR, "psycopg changed: check whether Pipeline.sync() still needs adapters/pgpipeline.py"


def test_a_pipeline_sync_after_a_query_larger_than_the_socket_buffers_returns():
    r = run(f"""
        import psycopg
        from psycopg import connection
        from entrypoints.bootstrap import install_process_fixes
        assert connection.Pipeline.__name__ == "Pipeline"  # nothing is patched by importing
        install_process_fixes()
        assert connection.Pipeline.__name__ == "FlushingPipeline"
        with psycopg.connect({SERVER_URL!r}) as conn:
            conn.execute("CREATE TEMP TABLE big (b bytea)")
            with conn.pipeline() as p, conn.cursor() as cur:
                cur.execute("INSERT INTO big VALUES (%s)", (b"x" * 48_000_000,))
                p.sync()
                cur.execute("SELECT length(b) FROM big")
                p.sync()
                print(cur.fetchone()[0])
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "48000000"


def test_a_large_batch_of_received_instances_is_saved_on_the_embedded_database(tmp_path):
    # the platform's default set-up: embedded PostgreSQL through its Unix socket
    r = run(f"""
        from pathlib import Path
        from pydicom.uid import generate_uid
        from entrypoints.bootstrap import build_app, upgrade
        from adapters.database import database
        from adapters.settings import Settings
        from application.imaging import ReceivedInstance
        from domain.imaging import received_study_id

        with database(Settings(data_dir=Path({str(tmp_path)!r}) / "var")) as s:
            assert "host=/" in s.database_url
            upgrade(s)
            app = build_app(s)
            est = app.add_establishment(finess="310781406", name="CHU de Toulouse", department="31")
            study, series = generate_uid(), generate_uid()
            items = [ReceivedInstance(
                sop_instance_uid=generate_uid(), series_instance_uid=series, study_instance_uid=study,
                sop_class_uid="1.2.840.10008.5.1.4.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1",
                instance_number=i, size=530000,
                patient={{"id": "P1", "name": "DUPONT^JEANNE", "birth_date": "19500302", "sex": "F"}},
                study={{"accession_number": "A1", "date": "20240101", "time": "101010", "description": "SCANNER", "referring": ""}},
                series={{"modality": "CT", "description": "SERIE 1", "number": 1}},
            ) for i in range(4000)]
            app.record_received(establishment_id=est, instances=items, source={{"kind": "dicom_store"}})
            print(len(app.repository.get(received_study_id(est, study)).instances))
            app.close()
        """, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "4000"


def test_the_fix_is_the_pipeline_every_connection_gets():
    assert psycopg.connection.Pipeline is FlushingPipeline
