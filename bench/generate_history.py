"""Generates a legacy history at the tender annex's scale, as a CSV in the import format.

The counts per year and workflow are those of the annex (2021 32,492 · 2022 46,568 · 2023
58,333 · 2024 to 31 May 33,588 dossiers, of which 28,438 sent from January to May 2023, so
that 2024 shows the annex's +18.11 %), 261,776 sends from 2021-01-01 to 2024-05-31, the CHU
Toulouse imaging split 62/33/5, inter-regional sends through the three channels. Deterministic
for a given --seed. Times are written in Paris local time with their offset.

`--identical 0.03`: that share of the dossiers is sent to two services of one establishment at the
same minute, which the legacy export (no service column) lists as two identical rows — as a real
export does; the rows, and so the sends, stay the annex's (the dossier's second row is replaced).

    .venv/bin/python bench/generate_history.py --out /tmp/legacy.csv          # annex scale
    .venv/bin/python bench/generate_history.py --out /tmp/small.csv --scale 0.01
    .venv/bin/python bench/generate_history.py --out /tmp/real.csv --identical 0.03
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from domain.identifiers import DEPARTMENT_REGION, luhn_key  # noqa: E402
from domain.values import PARIS  # noqa: E402

COLUMNS = (
    "dossier_id", "workflow", "created_at", "sent_at", "requester_finess", "requester_department",
    "recipient_finess", "recipient_department", "recipient_region", "imaging_source",
    "inter_regional_channel", "answered_at", "closed_at",
)
# Dossiers per (year, workflow): the annex's tables. 2023 is split in January–May / June–December.
ANNEX = {
    "imaging_transfer": {2021: 24_310, 2022: 34_873, (2023, 1): 22_134, (2023, 2): 23_314, 2024: 27_191},
    "emergency_opinion": {2021: 5_172, 2022: 8_134, (2023, 1): 4_370, (2023, 2): 4_581, 2024: 4_534},
    "stroke_opinion": {2021: 984, 2022: 1_355, (2023, 1): 651, (2023, 2): 583, 2024: 584},
    "kidney_transplant_mdt": {2021: 160, 2022: 213, (2023, 1): 98, (2023, 2): 148, 2024: 110},
    "generic_opinion": {2021: 1_517, 2022: 1_963, (2023, 1): 1_129, (2023, 2): 1_243, 2024: 1_138},
    "out_of_region_opinion": {2021: 49, 2022: 30, (2023, 1): 56, (2023, 2): 26, 2024: 31},
    "legacy": {2021: 300},
}
SPANS = {
    2021: (date(2021, 1, 1), date(2021, 12, 31)), 2022: (date(2022, 1, 1), date(2022, 12, 31)),
    (2023, 1): (date(2023, 1, 1), date(2023, 5, 31)), (2023, 2): (date(2023, 6, 1), date(2023, 12, 31)),
    2024: (date(2024, 1, 1), date(2024, 5, 31)),
}
SENDS_TOTAL = 261_776
# Requester departments of Occitanie, weighted roughly by population and hospital activity.
REQUESTER_DEPARTMENTS = {
    "31": 22, "34": 17, "30": 10, "66": 7, "11": 6, "81": 6, "12": 5, "65": 5, "82": 4, "32": 3, "46": 3, "09": 3, "48": 1,
}
OUT_OF_REGION = {"75": 45, "33": 20, "13": 15, "69": 12, "64": 8}  # recipients outside Occitanie
CHANNELS = {"national_network": 70, "attached_professional": 20, "email_invitation": 10}
SOURCES = ("dicom_store", "pacs_retrieve", "file_import", "none")
TOULOUSE, MONTPELLIER, NIMES = "310781406", "340780477", "300780038"
# (median minutes, share answered) per workflow
ANSWERS = {
    "imaging_transfer": (360, 0.55), "emergency_opinion": (45, 0.92), "stroke_opinion": (12, 0.97),
    "kidney_transplant_mdt": (6 * 1440, 0.9), "generic_opinion": (1440, 0.8), "out_of_region_opinion": (2 * 1440, 0.75),
    "legacy": (720, 0.7),
}


def finess(department: str, n: int) -> str:
    prefix = department[:2] + f"{n:06d}"
    return prefix + luhn_key(prefix)


def establishments(rng: random.Random) -> tuple[list[tuple[str, str, float]], list[tuple[str, str, float]]]:
    """(FINESS, department, weight) of Occitanie establishments, and of out-of-region recipients."""
    occitanie = [(TOULOUSE, "31", 40.0), (MONTPELLIER, "34", 30.0), (NIMES, "30", 14.0)]
    n = 100
    for dep, weight in REQUESTER_DEPARTMENTS.items():
        for _ in range(max(2, weight // 2)):
            n += 1
            occitanie.append((finess(dep, n), dep, rng.uniform(0.5, 3.0) * weight / 5))
    outside = []
    for dep, weight in OUT_OF_REGION.items():
        for _ in range(2):
            n += 1
            outside.append((finess(dep, n), dep, weight / 2))
    return occitanie, outside


def pick(rng: random.Random, items: list, weights: list[float]) -> object:
    return rng.choices(items, weights)[0]


def moment(rng: random.Random, day: date, workflow: str) -> datetime:
    """A Paris local time on that day: office hours mostly, nights for urgent workflows."""
    night = 0.3 if workflow in ("stroke_opinion", "emergency_opinion") else 0.04
    if rng.random() < night:
        minute = rng.choice([rng.randrange(0, 8 * 60), rng.randrange(19 * 60, 24 * 60)])
    else:
        minute = rng.randrange(8 * 60, 19 * 60)
    local = datetime.combine(day, time(minute // 60, minute % 60, rng.randrange(60)), tzinfo=PARIS)
    return local.astimezone(UTC)  # arithmetic in UTC: wall-clock sums go wrong across DST changes


def iso(value: datetime | None) -> str:
    return value.astimezone(PARIS).replace(microsecond=0).isoformat() if value else ""


def generate(out: Path, *, seed: int = 2024, scale: float = 1.0, identical: float = 0.0) -> tuple[int, int]:
    """Writes the CSV; returns (dossiers, sends)."""
    rng = random.Random(seed)
    occitanie, outside = establishments(rng)
    occ_ids, occ_w = [e[0] for e in occitanie], [e[2] for e in occitanie]
    dep_of = {e[0]: e[1] for e in occitanie + outside}
    out_ids, out_w = [e[0] for e in outside], [e[2] for e in outside]
    big = [TOULOUSE, MONTPELLIER, NIMES]

    plan = []  # (workflow, sent day)
    for workflow, counts in ANNEX.items():
        for part, count in counts.items():
            lo, hi = SPANS[part]
            days = (hi - lo).days + 1
            for _ in range(round(count * scale)):
                plan.append((workflow, lo + timedelta(days=rng.randrange(days))))
    plan.sort(key=lambda p: p[1])
    extra = round((SENDS_TOTAL - sum(sum(c.values()) for c in ANNEX.values())) * scale)
    sends_of = [1] * len(plan)
    order = list(range(len(plan)))
    rng.shuffle(order)
    for i in order[:extra]:
        sends_of[i] += 1
    for i in order[: max(0, extra - len(plan))]:
        sends_of[i] += 1

    # Its own generator: the history without identical rows stays the same for a given seed.
    twin_rng = random.Random(seed + 1)
    several = sum(1 for n in sends_of if n > 1)
    twin_share = min(1.0, identical * len(plan) / several) if several else 0.0

    rows = 0
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for n, (workflow, day) in enumerate(plan, 1):
            requester = pick(rng, occ_ids, occ_w)
            sent = moment(rng, day, workflow)
            created = sent - timedelta(minutes=rng.randrange(1, 120))
            if workflow == "generic_opinion" or (workflow in ("emergency_opinion", "kidney_transplant_mdt") and rng.random() < 0.5):
                source = "none"
            elif requester == TOULOUSE:
                source = pick(rng, list(SOURCES[:3]), [62, 33, 5])
            else:
                source = pick(rng, list(SOURCES[:3]), [50, 30, 20])
            recipients: list[str] = []
            while len(recipients) < sends_of[n - 1]:
                if workflow == "out_of_region_opinion" or rng.random() < 0.012:
                    candidate = pick(rng, out_ids, out_w)
                elif rng.random() < 0.7:
                    candidate = rng.choice(big)
                else:
                    candidate = pick(rng, occ_ids, occ_w)
                if candidate != requester and candidate not in recipients:
                    recipients.append(candidate)
            median, answered_share = ANSWERS[workflow]
            last = sent
            lines = []
            for k, recipient in enumerate(recipients):
                sent_k = sent if k == 0 or rng.random() < 0.9 else sent + timedelta(minutes=rng.randrange(5, 600))
                if sent_k.astimezone(PARIS).date() != sent.astimezone(PARIS).date():  # same Paris day (same period)
                    sent_k = sent
                answered = None
                last = max(last, sent_k)
                if rng.random() < answered_share:
                    answered = sent_k + timedelta(minutes=max(1.0, rng.lognormvariate(0, 1.0) * median))
                    last = max(last, answered)
                dep = dep_of[recipient]
                region = DEPARTMENT_REGION[dep]
                channel = pick(rng, list(CHANNELS), list(CHANNELS.values())) if region != "OCC" else ""
                lines.append([recipient, dep, region, channel, sent_k, answered])
            answered_any = any(line[5] is not None for line in lines)
            closed = last + timedelta(hours=rng.randrange(1, 72)) if answered_any and rng.random() < 0.7 else None
            if closed is not None and closed > datetime.now(UTC):
                closed = None
            if len(lines) > 1 and twin_share and twin_rng.random() < twin_share:
                lines[1] = lines[0]  # two services of the first recipient, the same minute
            legacy_id = f"TLO-{day.year}-{n:06d}"
            for recipient, dep, region, channel, sent_k, answered in lines:
                w.writerow([
                    legacy_id, workflow, iso(created), iso(sent_k), requester, dep_of[requester], recipient, dep,
                    region, source, channel, iso(answered), iso(closed),
                ])
                rows += 1
    return len(plan), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the annex's volume (default 1)")
    parser.add_argument("--identical", type=float, default=0.0,
                        help="share of dossiers listed with two identical rows (two services of one establishment)")
    args = parser.parse_args(argv)
    dossiers, sends = generate(args.out, seed=args.seed, scale=args.scale, identical=args.identical)
    size = args.out.stat().st_size / 1e6
    print(f"{args.out}: {dossiers:,} dossiers, {sends:,} sends (rows), {size:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
