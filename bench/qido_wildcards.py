"""QIDO-RS wildcard matching: the matcher (web/dicomweb/query.py) against the regular expression it
replaced (`*` -> `.*`, `?` -> `.`, fullmatch), on patterns of k `*?` pairs then a letter the value
lacks, against a 64-character name (the longest a PN component group is), and a search's worth of
values (1,000 records) for the worst pattern the server accepts (256 characters).

    .venv/bin/python bench/qido_wildcards.py [--regex-budget 5]

Prints figures, asserts nothing about time. The regular expression is timed in a child process
stopped after --regex-budget seconds.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from web.dicomweb import query  # noqa: E402

VALUE = "A" * 64


def old_regex(pattern: str) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.IGNORECASE | re.DOTALL)


def regex_seconds(pattern: str, budget: float) -> float | None:
    code = (
        "import re, sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "from qido_wildcards import old_regex\n"
        f"r = old_regex({pattern!r}); t = time.perf_counter(); r.fullmatch({VALUE!r}); print(time.perf_counter() - t)\n"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        return None
    return float(out.stdout)


def matcher_seconds(pattern: str, repeat: int = 100) -> float:
    f = query.make_filter("PatientName", pattern)
    assert f is not None
    t = time.perf_counter()
    for _ in range(repeat):
        f.matches(VALUE)
    return (time.perf_counter() - t) / repeat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--regex-budget", type=float, default=5.0)
    args = parser.parse_args()
    print(f"pattern '*?' x k + 'B' against {len(VALUE)} x 'A' (no match): one value")
    print(f"{'k':>3} {'regex (before)':>18} {'matcher (now)':>16}")
    gave_up = False
    for k in (1, 2, 3, 4, 5, 6, 8, 12, 30):
        pattern = "*?" * k + "B"
        regex = None if gave_up else regex_seconds(pattern, args.regex_budget)
        gave_up = gave_up or regex is None
        shown = f"> {args.regex_budget:.0f} s (stopped)" if regex is None else f"{regex * 1000:.3f} ms"
        print(f"{k:>3} {shown:>18} {matcher_seconds(pattern) * 1000:>13.3f} ms")
    worst = ("*?" * 128)[: query.MAX_PATTERN - 1] + "B"
    f = query.make_filter("PatientName", worst)
    assert f is not None
    t = time.perf_counter()
    for _ in range(1000):
        f.matches(VALUE)
    print(f"a {len(worst)}-character pattern (the longest accepted) against 1,000 such names: "
          f"{(time.perf_counter() - t) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
