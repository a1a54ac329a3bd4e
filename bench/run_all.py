"""Runs every benchmark script of bench/ in turn and says which failed (`make bench`).

    .venv/bin/python bench/run_all.py            # full figures (about 15 minutes on 2 cores, most of it
                                                 # the annex-scale history of history_stats.py)
    .venv/bin/python bench/run_all.py --quick    # smaller runs: checks that the scripts work

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust), as `scripts/services.sh` makes sure.
Scripts print figures and assert nothing about time; see bench/README.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (script, arguments for the full run, arguments for --quick). A script of bench/ not listed
# here still runs, with no arguments, so that a new one is never forgotten.
PLAN: list[tuple[str, list[str], list[str]]] = [
    ("save_dossiers.py", [], ["--dossiers", "1000"]),
    ("save_dossiers.py", ["--cipher"], ["--dossiers", "1000", "--cipher"]),
    ("startup.py", [], ["--repeat", "1"]),
    ("generate_history.py", ["--out", "/tmp/relais-legacy-history.csv"],
     ["--out", "/tmp/relais-legacy-history.csv", "--scale", "0.01"]),
    ("history_stats.py", [], ["--scale", "0.02", "--runs", "2"]),
    ("anonymous_uploads.py", [], ["--uploads", "4", "--size-mb", "64", "--min-seconds", "3"]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (a check, not figures to publish)")
    args = parser.parse_args(argv)

    plan = [(script, quick if args.quick else full) for script, full, quick in PLAN]
    listed = {script for script, _ in plan}
    others = sorted(p.name for p in HERE.glob("*.py") if p.name not in listed | {"run_all.py"} and not p.name.startswith("_"))
    plan += [(name, []) for name in others]

    results = []
    for script, script_args in plan:
        command = [sys.executable, str(HERE / script), *script_args]
        print(f"\n$ {' '.join(['python', f'bench/{script}', *script_args])}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.run(command, cwd=HERE.parent).returncode
        results.append((script, script_args, code, time.perf_counter() - t0))

    print("\nbench summary")
    for script, script_args, code, seconds in results:
        print(f"  {'ok    ' if code == 0 else f'FAILED ({code})':<12} {seconds:6.1f} s  bench/{script} {' '.join(script_args)}")
    return 0 if all(code == 0 for *_, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
