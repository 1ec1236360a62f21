"""Robust readers for the VoxCeleb identity meta files (`vox1_meta.csv`, `vox2_meta.csv`).

Why not `csv.DictReader` on a fixed header: the copies in circulation differ in ways that silently
break naive parsing (see pipeline/voxceleb_meta/README.md and docs/REFERENCES.md#e1):

* the official `vox1_meta.csv` is TAB-separated despite its name; other copies use commas or
  quote TAB-joined rows;
* `vox2_meta.csv` starts with a UTF-8 BOM and pads every field (`id00012 ,n000012 ,m ,dev `);
  some copies use CRLF, rename the first header field (`id`) or drop the spaces;
* header spellings vary (`VoxCeleb1 ID`, `VoxCeleb1_ID`, `VoxCeleb2 ID ,`).

So the delimiter is detected from the header line, every field is stripped, header names are
normalised to letters+digits, and rows are validated (identity format, duplicates) with errors that
name the file and line. The VGGFace1 name column of VoxCeleb1 is what face folders
(`unzippedIntervalFaces/data/<Name>/...`, VGGFace folders) and the Learnable-PINs lists are keyed
by, so `Meta.id_for_name()` provides the name -> id mapping in one place.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

#: A VoxCeleb identity id (meta rows, folder names of both layouts).
ID_RE = re.compile(r"^id\d{5}$")
#: VoxCeleb1 ids are id10001..id11251; VoxCeleb2 ids are id00012..id09272 (no overlap).
_VOX1_FIRST_ID = 10000

# normalised header name -> field
_HEADER_FIELDS = {
    "voxceleb1id": "identity",
    "voxceleb2id": "identity",
    "id": "identity",
    "identity": "identity",
    "speakerid": "identity",
    "vggface1id": "name",
    "vggfaceid": "name",
    "name": "name",
    "vggface2id": "vggface2_id",
    "gender": "gender",
    "sex": "gender",
    "nationality": "nationality",
    "set": "set",
    "vox1set": "set",
    "vox2set": "set",
    "split": "set",
}
_GENDERS = {"m": "m", "male": "m", "f": "f", "female": "f"}
#: Values of the official Set column (lower-cased).
SET_VALUES = ("dev", "test")


class MetaError(ValueError):
    """The meta file cannot be understood; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Identity:
    """One identity row. `name` is the VGGFace1 name (VoxCeleb1 only; VoxCeleb2 has none)."""

    identity: str
    dataset: str  # "voxceleb1" | "voxceleb2"
    gender: str | None  # "m" | "f" | None
    set: str | None  # the official Set column: "dev" | "test" (lower-cased)
    name: str | None = None
    nationality: str | None = None
    vggface2_id: str | None = None
    #: line of the meta file the row came from (for messages; not part of the row's value)
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class MetaWarning:
    """A row the parser accepted but a user should look at: `kind` is machine-readable
    (`missing_set`, `unknown_set`, `unknown_gender`, `extra_fields`, `missing_fields`)."""

    line: int
    identity: str
    kind: str
    message: str

    def as_dict(self) -> dict:
        return {"line": self.line, "identity": self.identity, "kind": self.kind, "message": self.message}


@dataclass
class Meta:
    """All identities of one meta file, with the VGGFace1 name <-> VoxCeleb1 id mapping.

    `warnings` lists questionable rows by line number (a missing or unknown Set, a gender other
    than m/f, extra or missing fields): the rows are kept, and whoever uses a field decides
    whether the problem matters (a split preset that reads `Set` turns `missing_set` /
    `unknown_set` into an error, see `pipeline.splits`).
    """

    path: Path
    dataset: str
    identities: dict[str, Identity]
    warnings: list[MetaWarning] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_name = {r.name: r.identity for r in self.identities.values() if r.name}

    def __len__(self) -> int:
        return len(self.identities)

    def __contains__(self, identity: str) -> bool:
        return identity in self.identities

    def __getitem__(self, identity: str) -> Identity:
        return self.identities[identity]

    def id_for_name(self, name: str) -> str | None:
        """VGGFace1 name (e.g. `A.J._Buckley`) -> VoxCeleb1 id, or None when unknown."""
        return self._by_name.get(name)

    def name_for_id(self, identity: str) -> str | None:
        row = self.identities.get(identity)
        return row.name if row else None


def dataset_of_identity(identity: str) -> str:
    """`voxceleb1` for id10000 and above, else `voxceleb2` (the official id ranges)."""
    return "voxceleb1" if int(identity[2:]) >= _VOX1_FIRST_ID else "voxceleb2"


def _normalise_header(field: str) -> str:
    return re.sub(r"[^a-z0-9]", "", field.lower())


def _detect_delimiter(header: str) -> str:
    if "\t" in header:
        return "\t"
    if "," in header:
        return ","
    if ";" in header:
        return ";"
    raise MetaError(f"cannot find the column separator (TAB, comma or semicolon) in header {header!r}")


def _split_row(line: str, delimiter: str) -> list[str]:
    fields = next(csv.reader(io.StringIO(line), delimiter=delimiter, skipinitialspace=True))
    # Some copies quote a whole TAB-joined row inside a comma file: unpack it.
    if len(fields) == 1 and "\t" in fields[0]:
        fields = fields[0].split("\t")
    return [f.strip().strip('"').strip() for f in fields]


def _positional_columns(n: int) -> dict[str, int]:
    if n >= 5:
        return {"identity": 0, "name": 1, "gender": 2, "nationality": 3, "set": 4}
    if n == 4:
        return {"identity": 0, "vggface2_id": 1, "gender": 2, "set": 3}
    raise MetaError(f"a header-less meta file needs 4 (vox2) or 5 (vox1) columns, found {n}")


def read_meta(path: str | Path, dataset: str | None = None) -> Meta:
    """Parse a VoxCeleb1 or VoxCeleb2 meta file in any of its circulating formats.

    `dataset` ("voxceleb1"/"voxceleb2") is checked against the ids when given, inferred otherwise.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise MetaError(
            f"meta file {path} does not exist; pass the vox1_meta.csv / vox2_meta.csv "
            "shipped with the dataset via --meta"
        ) from None
    except UnicodeDecodeError as err:
        raise MetaError(f"{path}: not UTF-8 text ({err}); is this really a meta csv?") from None
    text = text.lstrip("\ufeff")
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not lines:
        raise MetaError(f"{path} is empty")
    delimiter = _detect_delimiter(lines[0][1])
    first = _split_row(lines[0][1], delimiter)
    if ID_RE.match(first[0]):
        columns = _positional_columns(len(first))
        body = lines
    else:
        columns = {}
        for i, field in enumerate(first):
            key = _HEADER_FIELDS.get(_normalise_header(field))
            if key and key not in columns:
                columns[key] = i
        if "identity" not in columns:
            raise MetaError(
                f"{path}:{lines[0][0]}: no identity column in header {first!r} "
                "(expected e.g. 'VoxCeleb1 ID' or 'VoxCeleb2 ID')"
            )
        body = lines[1:]

    identities: dict[str, Identity] = {}
    warnings: list[MetaWarning] = []
    width = len(columns) if body is lines else len(first)  # fields a row should have
    for lineno, line in body:
        fields = _split_row(line, delimiter)

        def col(name: str) -> str | None:
            i = columns.get(name)
            value = fields[i] if i is not None and i < len(fields) else ""
            return value or None

        identity = col("identity") or ""
        if not ID_RE.match(identity):
            raise MetaError(f"{path}:{lineno}: {identity!r} is not a VoxCeleb id like 'id10001' (line {line!r})")
        row_dataset = dataset_of_identity(identity)
        if dataset is not None and row_dataset != dataset:
            raise MetaError(
                f"{path}:{lineno}: {identity} is a {row_dataset} id but the file was "
                f"read as {dataset}; pass the matching --meta for --dataset {dataset}"
            )
        gender_raw = (col("gender") or "").lower()
        row = Identity(
            identity=identity,
            dataset=row_dataset,
            gender=_GENDERS.get(gender_raw),
            set=(col("set") or "").lower() or None,
            name=col("name"),
            nationality=col("nationality"),
            vggface2_id=col("vggface2_id"),
            line=lineno,
        )
        if identity in identities and identities[identity] != row:
            raise MetaError(f"{path}:{lineno}: {identity} appears twice with different values")
        if identity not in identities:
            warnings += _row_warnings(
                path, lineno, row, gender_raw, fields, width, "set" in columns, "gender" in columns
            )
        identities[identity] = row
    if not identities:
        raise MetaError(f"{path}: header only, no identity rows")
    datasets = {r.dataset for r in identities.values()}
    if len(datasets) > 1:
        raise MetaError(f"{path}: mixes VoxCeleb1 and VoxCeleb2 ids; use one meta file per dataset")
    meta = Meta(path=path, dataset=datasets.pop(), identities=identities, warnings=warnings)
    names = [r.name for r in identities.values() if r.name]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:5]
        raise MetaError(f"{path}: VGGFace1 names are not unique ({dup}); name -> id would be ambiguous")
    return meta


def _row_warnings(
    path: Path,
    lineno: int,
    row: Identity,
    gender_raw: str,
    fields: list[str],
    width: int,
    has_set: bool,
    has_gender: bool,
) -> list[MetaWarning]:
    """What is questionable about one accepted row (see `Meta.warnings`)."""
    where, out = f"{path.name}:{lineno}: {row.identity}", []

    def warn(kind: str, message: str) -> None:
        out.append(MetaWarning(lineno, row.identity, kind, f"{where}: {message}"))

    # trailing empty fields (a trailing separator) carry nothing: not worth a warning
    used = len(fields)
    while used > width and not fields[used - 1]:
        used -= 1
    if used > width:
        warn(
            "extra_fields",
            f"{used - width} field(s) beyond the {width} columns of the header ({fields[width:used]!r}) are ignored",
        )
    elif len(fields) < width:
        warn("missing_fields", f"{len(fields)} field(s), the header has {width}")
    if has_set and row.set is None:
        warn("missing_set", "no Set value (expected dev or test)")
    elif row.set is not None and row.set not in SET_VALUES:
        warn("unknown_set", f"Set {row.set!r} is neither dev nor test")
    if has_gender and row.gender is None:
        shown = repr(gender_raw) if gender_raw else "empty"
        warn(
            "unknown_gender",
            f"gender {shown} is not m/f (or male/female): stored as unknown, so "
            "gender-matched negatives cannot use this identity",
        )
    return out


def warning_lines(warnings: list[MetaWarning], limit: int = 20) -> list[str]:
    """At most `limit` warning lines plus one that counts the rest (a file with thousands of odd
    rows must not bury the run's output; every warning is in the report)."""
    lines = [f"warning: {w.message}" for w in warnings[:limit]]
    if len(warnings) > limit:
        lines.append(f"warning: ... and {len(warnings) - limit} more meta rows (all listed in report.json)")
    return lines
