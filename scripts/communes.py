"""Makes adapters/data/communes.csv.gz, the places of birth (INSEE codes) the compose form resolves names to.

Source: the npm package @etalab/decoupage-administratif (INSEE's Code officiel géographique as JSON,
published by Etalab), fetched with `npm pack` and checked against its pinned sha512 before use. Kept:
current communes, the municipal districts of Paris, Lyon and Marseille, and the former communes that
live on as « communes déléguées » or « associées » (people were born there before the mergers), each
with its department; then the INSEE country codes (99xxx) of the common countries of birth abroad.

Run from the repository root: `.venv/bin/python scripts/communes.py` (needs npm and the npm registry).
To move to a newer year: change PACKAGE, VERSION and INTEGRITY (`npm view PACKAGE@VERSION dist.integrity`).
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@etalab/decoupage-administratif"
VERSION = "6.0.0"  # the 2026 « millésime »
INTEGRITY = "sha512-XavYsFlbcM/prKr8hNHPKER94IHw/dsxNM4nxjWMYk6PLFACpEedvn/7wK8Baozm0dCYhWWcf+7bcWpA5pmCaQ=="
OUT = Path(__file__).resolve().parent.parent / "adapters" / "data" / "communes.csv.gz"

KINDS = {  # the package's type -> the kind column
    "commune-actuelle": "commune",
    "arrondissement-municipal": "arrondissement",
    "commune-deleguee": "deleguee",
    "commune-associee": "associee",
}

# INSEE country codes (Code officiel géographique, « pays et territoires étrangers »): the countries of
# birth most often met in the region, written out by hand; the full list is INSEE's « pays » file.
COUNTRIES = [
    ("99109", "Allemagne"), ("99125", "Albanie"), ("99352", "Algérie"), ("99130", "Andorre"), ("99201", "Arabie saoudite"),
    ("99415", "Argentine"), ("99252", "Arménie"), ("99501", "Australie"), ("99110", "Autriche"), ("99131", "Belgique"),
    ("99327", "Bénin"), ("99118", "Bosnie-Herzégovine"), ("99416", "Brésil"), ("99111", "Bulgarie"),
    ("99331", "Burkina"), ("99322", "Cameroun"), ("99401", "Canada"), ("99417", "Chili"), ("99216", "Chine"),
    ("99419", "Colombie"), ("99397", "Comores"), ("99324", "Congo"), ("99312", "Congo (République démocratique)"),
    ("99326", "Côte d'Ivoire"), ("99119", "Croatie"), ("99101", "Danemark"), ("99301", "Égypte"), ("99134", "Espagne"),
    ("99404", "États-Unis"), ("99105", "Finlande"), ("99328", "Gabon"), ("99255", "Géorgie"), ("99126", "Grèce"),
    ("99330", "Guinée"), ("99410", "Haïti"), ("99112", "Hongrie"), ("99223", "Inde"), ("99204", "Iran"), ("99203", "Irak"),
    ("99136", "Irlande"), ("99207", "Israël"), ("99127", "Italie"), ("99217", "Japon"), ("99157", "Kosovo"),
    ("99205", "Liban"), ("99316", "Libye"), ("99137", "Luxembourg"), ("99333", "Madagascar"), ("99335", "Mali"),
    ("99350", "Maroc"), ("99390", "Maurice"), ("99336", "Mauritanie"), ("99405", "Mexique"), ("99151", "Moldavie"),
    ("99138", "Monaco"), ("99103", "Norvège"), ("99213", "Pakistan"), ("99135", "Pays-Bas"), ("99422", "Pérou"),
    ("99220", "Philippines"), ("99122", "Pologne"), ("99139", "Portugal"), ("99114", "Roumanie"), ("99132", "Royaume-Uni"),
    ("99123", "Russie"), ("99341", "Sénégal"), ("99121", "Serbie"), ("99117", "Slovaquie"), ("99145", "Slovénie"),
    ("99104", "Suède"), ("99140", "Suisse"), ("99206", "Syrie"), ("99344", "Tchad"), ("99116", "Tchéquie"),
    ("99219", "Thaïlande"), ("99345", "Togo"), ("99351", "Tunisie"), ("99208", "Turquie"), ("99155", "Ukraine"),
    ("99243", "Viêt Nam"),
]


def fetch(workdir: Path) -> bytes:
    """The package's tarball from the npm registry, its sha512 checked against INTEGRITY."""
    subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent", "--pack-destination", str(workdir)],
                   check=True, cwd=workdir, stdout=subprocess.DEVNULL)
    tarball = next(workdir.glob("*.tgz"))
    data = tarball.read_bytes()
    got = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if got != INTEGRITY:
        raise SystemExit(f"{tarball.name}: integrity {got} differs from the pinned {INTEGRITY}")
    return data


def rows(tarball: bytes) -> list[tuple[str, ...]]:
    """(code, name, department, kind, parent code, population) of every place kept, then the countries."""
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        member = tar.extractfile("package/data/communes.json")
        assert member is not None
        communes = json.load(member)
    out: list[tuple[str, ...]] = []
    for c in communes:
        kind = KINDS.get(c.get("type", ""))
        if kind is None:
            continue
        parent = c.get("commune") or c.get("chefLieu") or ""
        out.append((c["code"], c["nom"], c["departement"], kind, parent if parent != c["code"] or kind != "commune" else "",
                    str(c.get("population") or "")))
    out.sort(key=lambda r: (r[0], r[3] != "commune", r[1]))
    out += [(code, name, "", "pays", "", "") for code, name in sorted(COUNTRIES, key=lambda c: c[1])]
    return out


def write(places: list[tuple[str, ...]], path: Path) -> None:
    text = io.StringIO()
    text.write(f"# {PACKAGE} {VERSION} data/communes.json ({INTEGRITY}); countries: INSEE 99xxx codes\n")
    writer = csv.writer(text, delimiter=";", lineterminator="\n")
    writer.writerow(["code", "name", "department", "kind", "parent", "population"])
    writer.writerows(places)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime 0: the same source gives the same bytes
    path.write_bytes(gzip.compress(text.getvalue().encode("utf-8"), compresslevel=9, mtime=0))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        places = rows(fetch(Path(tmp)))
    write(places, OUT)
    print(f"{OUT}: {len(places)} places ({PACKAGE} {VERSION})", file=sys.stderr)


if __name__ == "__main__":
    main()
