"""VoxCeleb meta files in the exact formats of the real ones, and one strict parser for both.

Real formats (see pipeline/voxceleb_meta/README.md):

* ``vox1_meta.csv`` is TAB-separated despite its name, LF line ends, header
  ``VoxCeleb1 ID<TAB>VGGFace1 ID<TAB>Gender<TAB>Nationality<TAB>Set``.
* ``vox2_meta.csv`` starts with a UTF-8 BOM, is comma-separated, and pads every field with one
  trailing space: ``id00012 ,n000012 ,m ,dev ``.

The same parser reads the real files (tested), so what parses here parses for real data too.

Why a second parser next to `pipeline.meta.read_meta`: the ingest's parser is lenient on purpose
(it accepts every circulating variant of these files); this one is *strict* (exact header, BOM,
padding, field values) so the tests can prove the generator writes the real format, not merely
something the lenient parser tolerates. Production code reads meta files with `pipeline.meta`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VOX1_HEADER = ("VoxCeleb1 ID", "VGGFace1 ID", "Gender", "Nationality", "Set")
VOX2_HEADER = ("VoxCeleb2 ID", "VGGFace2 ID", "Gender", "Set")
BOM = "\ufeff"


class MetaFormatError(ValueError):
    """A meta file that does not have the real file's shape; the message names file and line."""


@dataclass(frozen=True)
class MetaRow:
    """One identity row. `name` is the VGGFace1 name (vox1) or VGGFace2 id (vox2)."""

    identity: str
    name: str
    gender: str
    set: str
    nationality: str | None = None


def write_vox1_meta(path: Path, rows: list[MetaRow]) -> None:
    lines = ["\t".join(VOX1_HEADER)]
    lines += [f"{r.identity}\t{r.name}\t{r.gender}\t{r.nationality}\t{r.set}" for r in rows]
    Path(path).write_bytes(("\n".join(lines) + "\n").encode("utf-8"))


def write_vox2_meta(path: Path, rows: list[MetaRow]) -> None:
    lines = [",".join(VOX2_HEADER)]
    lines += [f"{r.identity} ,{r.name} ,{r.gender} ,{r.set} " for r in rows]
    Path(path).write_bytes((BOM + "\n".join(lines) + "\n").encode("utf-8"))


def _check_row(path: Path, lineno: int, row: MetaRow) -> None:
    if not (row.identity.startswith("id") and row.identity[2:].isdigit() and len(row.identity) == 7):
        raise MetaFormatError(f"{path}:{lineno}: bad identity {row.identity!r} (want idNNNNN)")
    if row.gender not in ("m", "f"):
        raise MetaFormatError(f"{path}:{lineno}: bad gender {row.gender!r} (want m or f)")
    if row.set not in ("dev", "test"):
        raise MetaFormatError(f"{path}:{lineno}: bad Set {row.set!r} (want dev or test)")


def _read_lines(path: Path) -> list[str]:
    text = Path(path).read_bytes().decode("utf-8")
    if text.startswith(BOM):
        text = text[1:]
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def read_vox1_meta(path: Path) -> list[MetaRow]:
    """Rows of a VoxCeleb1 meta file (TAB-separated). Raises MetaFormatError on any bad line."""
    lines = _read_lines(path)
    if not lines or tuple(f.strip() for f in lines[0].split("\t")) != VOX1_HEADER:
        raise MetaFormatError(f"{path}:1: header is not the VoxCeleb1 TAB header {VOX1_HEADER}")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) != 5:
            raise MetaFormatError(f"{path}:{lineno}: expected 5 TAB-separated fields, got {len(fields)}")
        row = MetaRow(identity=fields[0], name=fields[1], gender=fields[2], nationality=fields[3], set=fields[4])
        _check_row(path, lineno, row)
        rows.append(row)
    return rows


def read_vox2_meta(path: Path) -> list[MetaRow]:
    """Rows of a VoxCeleb2 meta file (BOM, comma, padded). Raises MetaFormatError on any bad line."""
    lines = _read_lines(path)
    if not lines or tuple(f.strip() for f in lines[0].split(",")) != VOX2_HEADER:
        raise MetaFormatError(f"{path}:1: header is not the VoxCeleb2 header {VOX2_HEADER}")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4:
            raise MetaFormatError(f"{path}:{lineno}: expected 4 comma-separated fields, got {len(fields)}")
        row = MetaRow(identity=fields[0], name=fields[1], gender=fields[2], set=fields[3])
        _check_row(path, lineno, row)
        rows.append(row)
    return rows
