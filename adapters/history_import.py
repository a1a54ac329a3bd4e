"""Reading the legacy platform's CSV export and importing it in batches (`relais import-history`).

The whole file is read and checked before anything is written: a file that cannot be read
(encoding, header, separator, no row) is refused as a whole; a row that is invalid refuses its
dossier (every row of it: a dossier is never half-imported) with the line number and the reason.
Each row is a send (identical rows too, with a warning). Whatever of the file is echoed goes
through `shown` (80 characters at most, control characters escaped).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, TypedDict, get_args

from application import Relais
from application.history import ImportOutcome, LegacyDossier, LegacySend
from domain.cells import formula_like
from domain.errors import InvalidFieldError
from domain.identifiers import OCCITANIE, check_department, check_finess, check_region, region_of
from domain.values import Channel, ImagingSource, Workflow, code, text

COLUMNS = (
    "dossier_id", "workflow", "created_at", "sent_at", "requester_finess", "requester_department",
    "recipient_finess", "recipient_department", "recipient_region", "imaging_source",
    "inter_regional_channel", "answered_at", "closed_at",
)
# Optional: the legacy send identifier (rows sharing one are one send) and the recipient service
# (rows differing only by it are two sends). Without them, identical rows are distinct sends.
OPTIONAL_COLUMNS = ("send_id", "recipient_service")
DossierField = Literal["workflow", "created_at", "requester_finess", "requester_department", "imaging_source", "closed_at"]
DOSSIER_FIELDS: tuple[DossierField, ...] = get_args(DossierField)
CLOCK_SKEW = timedelta(minutes=2)
# No field of the format needs more (ISO times with their offset are 25-32 characters, FINESS 9,
# codes under 30); a longer one is refused before it is parsed, so no message echoes more of it.
MAX_FIELD = 64
SHOWN = 80  # characters of a value echoed in a message
IDENTICAL = "ligne identique à la ligne"
EXAMPLE_TIME = "2023-03-14T09:30:00+01:00"


class DossierFields(TypedDict):
    """A row's fields of its dossier (every row of one dossier repeats them): LegacyDossier's own."""

    workflow: str
    created_at: datetime
    requester_finess: str
    requester_department: str
    imaging_source: str
    closed_at: datetime | None


class LegacyFileError(Exception):
    """The file cannot be read as a whole: nothing was imported."""


def _unprintable(char: str) -> bool:
    """Control, format (bidi overrides…), private, unassigned characters and line/paragraph separators."""
    category = unicodedata.category(char)
    return category[0] == "C" or category in ("Zl", "Zp")


def shown(value: str, limit: int = SHOWN) -> str:
    """A value of the file as it may be echoed (stderr, refusal lines): at most `limit` characters
    of it, its control characters and line breaks escaped as `repr` does (`\\n`, `\\x1b`,
    `\\u202e`), so that it stays on its line, short, and can neither forge another line nor drive
    the terminal."""
    head = value[:limit]
    if not head.isprintable():  # (the common case is printable, checked at C speed; spaces other than U+0020 are not)
        head = "".join(repr(c)[1:-1] if _unprintable(c) else c for c in head)[:limit]
    return head if len(value) <= limit else f"{head}… ({len(value)} caractères)"


def label(value: str, field: str, *, max_len: int) -> str:
    """A short text of the file: printable, on one line, bounded."""
    value = text(value, field, max_len=max_len)
    if not value.isprintable() and any(_unprintable(c) for c in value):
        raise InvalidFieldError(field, f"caractère de contrôle ou saut de ligne « {shown(value)} »")
    return value


def identifier(value: str, field: str, *, max_len: int = 64) -> str:
    """A legacy identifier: a label that is not a spreadsheet formula."""
    value = label(value, field, max_len=max_len)
    if formula_like(value):
        raise InvalidFieldError(field, f"identifiant commençant comme une formule de tableur « {shown(value)} »")
    return value


@dataclass(frozen=True)
class RowError:
    """A refused (or, in `warnings`, a noted) row: its line, its dossier as written, why."""

    line: int
    dossier_id: str
    reason: str

    @property
    def shown_dossier_id(self) -> str:
        return shown(self.dossier_id)

    @property
    def shown_reason(self) -> str:
        # Reasons quote at most MAX_FIELD characters of a value (longer fields are refused as such);
        # the limit only guards against a message that would quote more.
        return shown(self.reason, limit=4 * SHOWN)

    def __str__(self) -> str:
        who = f" (télédossier {self.shown_dossier_id})" if self.dossier_id else ""
        return f"ligne {self.line}{who} : {self.shown_reason}"


@dataclass
class ParsedFile:
    name: str
    delimiter: str
    rows: int = 0
    dossiers: list[LegacyDossier] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    identical_rows: int = 0  # rows identical to an earlier one of their dossier (each one a send)
    extra_columns: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------- decoding


def decode(raw: bytes, encoding: str) -> str:
    """The file's text; a BOM is dropped; UTF-16 and undecodable bytes refuse the file."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise LegacyFileError(
            "fichier en UTF-16 (« Texte Unicode » d'Excel) : enregistrez-le en « CSV UTF-8 (délimité par des virgules) »"
        )
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
        encoding = "utf-8"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise LegacyFileError(
            f"le fichier n'est pas en {encoding} (octet 0x{raw[e.start]:02X} à la ligne {line}) : "
            "enregistrez-le en « CSV UTF-8 » ou indiquez son encodage (--encoding cp1252 pour un CSV Excel Windows)"
        ) from None
    except LookupError:
        raise LegacyFileError(f"encodage inconnu « {shown(encoding)} »") from None


def sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    if counts[best] == 0:
        raise LegacyFileError(
            "en-tête illisible : aucun séparateur (virgule, point-virgule ou tabulation) sur la première ligne"
        )
    return best


def records(content: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number where the record starts, fields) of each non-blank record; CRLF, CR or LF."""
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, strict=True)
    start = 1
    try:
        for fields in reader:
            line, start = start, reader.line_num + 1
            if fields and any(f.strip() for f in fields):
                yield line, fields
    except csv.Error as e:
        raise LegacyFileError(f"ligne {reader.line_num} : CSV mal formé ({e})") from None


def header_map(fields: list[str]) -> tuple[dict[str, int], list[str]]:
    names = [f.strip().strip('"').strip().lower() for f in fields]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        found = ", ".join(shown(n) for n in names if n) or "aucune"
        raise LegacyFileError(
            f"en-tête : colonne(s) manquante(s) : {', '.join(missing)} (trouvées : {found}). "
            f"Colonnes attendues : {', '.join(COLUMNS)}"
        )
    known = COLUMNS + OPTIONAL_COLUMNS
    duplicated = sorted({n for n in names if names.count(n) > 1 and n in known})
    if duplicated:
        raise LegacyFileError(f"en-tête : colonne(s) en double : {', '.join(duplicated)}")
    return {c: names.index(c) for c in known if c in names}, [n for n in names if n not in known]


# ------------------------------------------------------------------------- one row


def parse_time(value: str, name: str, now: datetime, *, required: bool) -> datetime | None:
    value = value.strip()
    if not value:
        if required:
            raise InvalidFieldError(name, "champ obligatoire")
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidFieldError(name, f"date invalide « {value} » (ISO 8601 avec décalage attendu, ex. {EXAMPLE_TIME})") from None
    if moment.tzinfo is None:
        raise InvalidFieldError(name, f"heure sans décalage UTC « {value} » (ex. {EXAMPLE_TIME})")
    if moment - now > CLOCK_SKEW:
        raise InvalidFieldError(name, f"date dans le futur « {value} »")
    return moment.astimezone(UTC)


def parse_row(values: dict[str, str], now: datetime, line: int) -> tuple[DossierFields, LegacySend]:
    """The dossier's fields and the send of one row (InvalidFieldError names the column)."""
    for column, value in values.items():
        if column not in ("dossier_id", "recipient_service") and len(value.strip()) > MAX_FIELD:
            raise InvalidFieldError(
                column, f"trop long ({len(value.strip())} caractères, maximum {MAX_FIELD}) « {shown(value.strip())} »"
            )
    workflow = code(Workflow, values["workflow"].strip(), "workflow")
    created_at = parse_time(values["created_at"], "created_at", now, required=True)
    requester_finess = check_finess(values["requester_finess"], "requester_finess")
    requester_department = check_department(values["requester_department"], "requester_department")
    imaging_source = code(ImagingSource, values["imaging_source"].strip(), "imaging_source")
    closed_at = parse_time(values["closed_at"], "closed_at", now, required=False)
    department = check_department(values["recipient_department"], "recipient_department")
    region = check_region(values["recipient_region"], "recipient_region")
    if region_of(department) != region:
        raise InvalidFieldError(
            "recipient_region", f"« {region} » ne correspond pas au département {department} ({region_of(department)})"
        )
    channel = values["inter_regional_channel"].strip() or None
    if region != OCCITANIE and channel is None:
        raise InvalidFieldError("inter_regional_channel", "obligatoire pour un destinataire hors Occitanie")
    if region == OCCITANIE and channel is not None:
        raise InvalidFieldError("inter_regional_channel", "doit être vide pour un destinataire d'Occitanie")
    if channel is not None:
        channel = code(Channel, channel, "inter_regional_channel")
    sent_at = parse_time(values["sent_at"], "sent_at", now, required=True)
    answered_at = parse_time(values["answered_at"], "answered_at", now, required=False)
    assert sent_at is not None and created_at is not None
    if sent_at < created_at:
        raise InvalidFieldError("sent_at", "antérieure à created_at")
    if answered_at is not None and answered_at < sent_at:
        raise InvalidFieldError("answered_at", "antérieure à sent_at")
    if closed_at is not None and closed_at < sent_at:
        raise InvalidFieldError("closed_at", "antérieure à sent_at")
    if closed_at is not None and answered_at is not None and closed_at < answered_at:
        raise InvalidFieldError("closed_at", "antérieure à answered_at")
    dossier: DossierFields = {
        "workflow": workflow,
        "created_at": created_at,
        "requester_finess": requester_finess,
        "requester_department": requester_department,
        "imaging_source": imaging_source,
        "closed_at": closed_at,
    }
    send_id, service = values.get("send_id", "").strip(), values.get("recipient_service", "").strip()
    send = LegacySend(
        line=line, recipient_finess=check_finess(values["recipient_finess"], "recipient_finess"),
        recipient_department=department, recipient_region=region, channel=channel,
        sent_at=sent_at, answered_at=answered_at,
        send_id=identifier(send_id, "send_id") if send_id else None,
        service=label(service, "recipient_service", max_len=120) if service else None,
    )
    return dossier, send


# ------------------------------------------------------------------------- the file


def read_legacy_file(path: Path, *, encoding: str = "utf-8", now: datetime | None = None) -> ParsedFile:
    """Reads and checks the whole file; raises LegacyFileError if it cannot be read at all."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise LegacyFileError(f"{path} : lecture impossible ({e.strerror})") from None
    return parse_legacy_text(decode(raw, encoding), name=path.name, now=now)


def parse_legacy_text(content: str, *, name: str = "", now: datetime | None = None) -> ParsedFile:
    now = now or datetime.now(UTC)
    first_line = content.lstrip("\ufeff").split("\n", 1)[0]
    if not first_line.strip():
        raise LegacyFileError("fichier vide (ni en-tête ni ligne)")
    delimiter = sniff_delimiter(first_line)
    rows = records(content.lstrip("\ufeff"), delimiter)
    header_line, header = next(rows)
    columns, extra = header_map(header)
    parsed = ParsedFile(name=name, delimiter=delimiter, extra_columns=extra)

    by_dossier: dict[str, list[tuple[int, DossierFields, LegacySend]]] = {}
    bad: dict[str, list[RowError]] = {}
    finess_department: dict[str, tuple[str, int]] = {}
    send_owner: dict[str, tuple[str, int]] = {}  # legacy send_id → (dossier, line)
    for line, fields in rows:
        parsed.rows += 1
        legacy_id = fields[columns["dossier_id"]].strip() if len(fields) > columns["dossier_id"] else ""
        if len(fields) != len(header):
            hint = " (séparateur différent de celui de l'en-tête ?)" if len(fields) == 1 else ""
            parsed.errors.append(RowError(line, legacy_id, f"{len(fields)} champ(s) au lieu de {len(header)}{hint}"))
            bad.setdefault(legacy_id, [])
            continue
        values = {c: fields[i] for c, i in columns.items()}
        try:
            legacy_id = identifier(legacy_id, "dossier_id")
            dossier, send = parse_row(values, now, line)
            for f, dep, col in (
                (dossier["requester_finess"], dossier["requester_department"], "requester_department"),
                (send.recipient_finess, send.recipient_department, "recipient_department"),
            ):
                seen = finess_department.setdefault(f, (dep, line))
                if seen[0] != dep:
                    raise InvalidFieldError(col, f"FINESS {f} : département {dep}, mais {seen[0]} à la ligne {seen[1]}")
            if send.send_id is not None:
                owner = send_owner.setdefault(send.send_id, (legacy_id, line))
                if owner[0] != legacy_id:
                    raise InvalidFieldError(
                        "send_id", f"« {send.send_id} » est déjà celui du télédossier {owner[0]} (ligne {owner[1]})"
                    )
        except InvalidFieldError as e:
            parsed.errors.append(RowError(line, legacy_id, f"{e.field} : {e.message}"))
            bad.setdefault(legacy_id, [])
            continue
        by_dossier.setdefault(legacy_id, []).append((line, dossier, send))

    for legacy_id, rows_ in by_dossier.items():
        reason = _inconsistency(rows_) if legacy_id not in bad else "une autre ligne de ce télédossier est invalide"
        sends: list[LegacySend] = []
        warnings: list[RowError] = []
        if not reason:
            reason = _sends(legacy_id, [s for _, _, s in rows_], sends, warnings)
        if reason:
            parsed.errors.extend(RowError(line, legacy_id, reason) for line, _, _ in rows_)
            continue
        _, d, _ = rows_[0]
        parsed.dossiers.append(LegacyDossier(legacy_id=legacy_id, file=name, sends=tuple(sends), **d))
        parsed.warnings.extend(warnings)
        parsed.identical_rows += sum(1 for w in warnings if w.reason.startswith(IDENTICAL))
    if parsed.rows == 0:
        raise LegacyFileError("aucune ligne après l'en-tête : un export de l'ancienne plateforme vide est un export incomplet")
    parsed.errors.sort(key=lambda e: e.line)
    parsed.warnings.sort(key=lambda e: e.line)
    return parsed


def _inconsistency(rows: list[tuple[int, DossierFields, LegacySend]]) -> str | None:
    """Why the rows of one dossier do not describe one dossier, or None."""
    line0, first, _ = rows[0]
    for line, d, _ in rows:
        for f in DOSSIER_FIELDS:
            if d[f] != first[f]:
                return f"{f} diffère entre les lignes {line0} et {line} du même télédossier"
    return None


def _sends(legacy_id: str, rows: list[LegacySend], sends: list[LegacySend], warnings: list[RowError]) -> str | None:
    """The dossier's sends (into `sends`), or why its rows contradict each other.

    Each row is a send, as in the legacy platform's own counts: identical rows are sends to
    services of one establishment that the export does not name (a warning says so). Rows with
    the same `send_id` are one send, and must then say the same thing.
    """
    by_send_id: dict[str, LegacySend] = {}
    by_content: dict[tuple[object, ...], int] = {}
    for s in rows:
        if s.send_id is not None:
            first = by_send_id.setdefault(s.send_id, s)
            if first is not s:
                if first.same() != s.same():
                    return f"send_id : « {s.send_id} » décrit deux envois différents (lignes {first.line} et {s.line})"
                warnings.append(RowError(s.line, legacy_id, f"même send_id « {s.send_id} » que la ligne {first.line} : un seul envoi"))
                continue
        else:
            line = by_content.setdefault(s.same(), s.line)
            if line != s.line:
                warnings.append(RowError(
                    s.line, legacy_id,
                    f"{IDENTICAL} {line} : importée comme un envoi de plus (services non distingués par l'export)",
                ))
        sends.append(s)
    return None


# ------------------------------------------------------------------------- importing


@dataclass
class ImportReport:
    rows: int = 0
    dossiers: int = 0
    imported: int = 0
    imported_rows: int = 0
    events: int = 0
    unchanged: int = 0
    establishments_added: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    identical_rows: int = 0


def import_file(
    app: Relais, parsed: ParsedFile, *, batch_size: int = 500, dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Imports the valid dossiers of a parsed file in batches (one transaction each)."""
    report = ImportReport(
        rows=parsed.rows, dossiers=len(parsed.dossiers), errors=list(parsed.errors), warnings=list(parsed.warnings),
        identical_rows=parsed.identical_rows,
    )
    dossiers = parsed.dossiers
    wanted: dict[str, str] = {}
    for d in dossiers:
        wanted.setdefault(d.requester_finess, d.requester_department)
        for s in d.sends:
            wanted.setdefault(s.recipient_finess, s.recipient_department)
    known = app.establishment_departments(wanted)
    conflicts = {f: dep for f, dep in known.items() if wanted[f] != dep}
    if conflicts:
        kept: list[LegacyDossier] = []
        for d in dossiers:
            clash = [f for f in (d.requester_finess, *(s.recipient_finess for s in d.sends)) if f in conflicts]
            if clash:
                f = clash[0]
                reason = f"FINESS {f} : département {wanted[f]} dans le fichier, {conflicts[f]} dans l'annuaire"
                report.errors.extend(RowError(line, d.legacy_id, reason) for line in d.lines)
            else:
                kept.append(d)
        dossiers = kept
    missing = {f: dep for f, dep in wanted.items() if f not in known}
    if dry_run:
        report.establishments_added = sorted(missing)
    elif missing:
        report.establishments_added = app.add_imported_establishments(missing)

    def account(outcome: ImportOutcome, batch: list[LegacyDossier]) -> None:
        report.imported += len(outcome.imported)
        report.imported_rows += sum(len(d.sends) for d in outcome.imported)
        report.events += outcome.events
        report.unchanged += len(outcome.unchanged)
        for d, reason in outcome.refused:
            report.errors.extend(RowError(line, d.legacy_id, reason) for line in d.lines)
        if progress is not None:
            progress(sum(len(d.sends) for d in batch))

    batches = [dossiers[i: i + batch_size] for i in range(0, len(dossiers), batch_size)]
    if dry_run:
        for batch in batches:
            account(app.import_legacy_dossiers(batch, save=False), batch)
    else:
        # The next batch is built while the previous one is written (the database's share of the
        # work runs outside the GIL); batches hold distinct dossiers, so they never interfere.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-save") as saver:
            writing: tuple[Future[ImportOutcome], list[LegacyDossier]] | None = None
            for batch in batches:
                prepared = app.prepare_legacy_dossiers(batch)
                if writing is not None:
                    account(writing[0].result(), writing[1])
                writing = (saver.submit(app.save_prepared, prepared), batch)
            if writing is not None:
                account(writing[0].result(), writing[1])
    report.errors.sort(key=lambda e: e.line)
    return report
