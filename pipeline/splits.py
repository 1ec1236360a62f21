"""Identity split presets for VoxCeleb1/2 and the identity-disjointness (leak) check.

Voice-face matching is evaluated on *unseen* people, so every preset assigns whole identities to
`train` / `val` / `test`, never clips. The presets reproduce the splits used in the literature
(docs/REFERENCES.md#e3 to #e6, #e13):

* `wen1251` - Wen et al. (DIMNet) letter split over all 1,251 VoxCeleb1 identities by the first
  letter of the VGGFace1 name: A/B val, C/D/E test, F-Z train -> 116 / 193 / 942. What the
  Wang/Zheng (AICANet) test lists use.
* `wen1225` - the same letter split restricted to the 1,225 identities with VGGFace images
  (val 112 and test 189 exact from the published lists; train = F-Z minus the 16 dotted names =
  926, two further unknown exclusions make the papers' 924), read from
  `voxceleb_meta/vox1_identity_splits_derived.csv`.
* `pins` - Learnable PINs (Nagrani et al., ECCV 2018): 901 train / 100 val / 250 unseen-unheard
  test, keyed by VGGFace1 name (mapped to ids through the meta file).
* `vox2` - VoxCeleb2 `Set` column: dev -> train, test -> test (the default for VoxCeleb2).
* `vox2test` - the 118 released VoxCeleb2 test identities: meta `test` minus id04170 and id05348,
  which the meta lists but the download does not contain (cross-dataset evaluation).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .meta import SET_VALUES, Meta

PRESET_DIR = Path(__file__).with_name("voxceleb_meta")
WEN1225_FILE = PRESET_DIR / "vox1_identity_splits_derived.csv"
PINS_FILE = PRESET_DIR / "learnable_pins_lists" / "identity_splits.txt"
SPLITS = ("train", "val", "test")
#: Listed as `test` in vox2_meta.csv but absent from the VoxCeleb2 test download (docs/REFERENCES.md#e6).
VOX2_TEST_MISSING = ("id04170", "id05348")
_PINS_CODES = {"1": "train", "2": "val", "4": "test"}
PRESETS = {
    "wen1251": "voxceleb1",
    "wen1225": "voxceleb1",
    "pins": "voxceleb1",
    "vox2": "voxceleb2",
    "vox2test": "voxceleb2",
}
DEFAULT_PRESET = {"voxceleb1": "wen1251", "voxceleb2": "vox2"}


class SplitError(ValueError):
    """A preset cannot be applied to the given meta file (wrong dataset, lists that do not match)."""


class SplitLeakError(SplitError):
    """The same identity would appear in two splits."""


@dataclass
class SplitAssignment:
    """Which split each identity belongs to; identities the preset leaves out are in `excluded`."""

    preset: str
    split_of: dict[str, str]
    excluded: dict[str, str] = field(default_factory=dict)  # identity -> reason

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for v in self.split_of.values() if v == s) for s in SPLITS}

    def splits(self) -> list[str]:
        """The splits this preset populates, in train/val/test order."""
        present = set(self.split_of.values())
        return [s for s in SPLITS if s in present]


def _letter_split(name: str) -> str:
    initial = name[:1].upper()
    if initial in ("A", "B"):
        return "val"
    if initial in ("C", "D", "E"):
        return "test"
    return "train"


def _wen1251(meta: Meta) -> SplitAssignment:
    split_of = {}
    for row in meta.identities.values():
        if not row.name:
            raise SplitError(
                f"{meta.path}: {row.identity} has no VGGFace1 name; the wen letter split needs the 'VGGFace1 ID' column"
            )
        split_of[row.identity] = _letter_split(row.name)
    return SplitAssignment("wen1251", split_of)


def _wen1225(meta: Meta, list_file: Path) -> SplitAssignment:
    split_of, excluded, mismatched = {}, {}, []
    with open(list_file, newline="", encoding="utf-8-sig") as fh:
        rows = {r["VoxCeleb1_ID"].strip(): r for r in csv.DictReader(fh)}
    for identity, row in meta.identities.items():
        listed = rows.get(identity)
        if listed is None or listed["VGGFace1_ID"].strip() != row.name:
            mismatched.append(identity)
            continue
        status = listed["Wen_1225_status"].strip()
        if status.startswith("excluded"):
            excluded[identity] = f"wen1225: {status}"
        else:
            split_of[identity] = listed["Wen_letter_split"].strip()
    if mismatched:
        raise SplitError(
            f"the wen1225 list {list_file} does not describe {meta.path}: {len(mismatched)} of "
            f"{len(meta)} identities are missing or have another VGGFace1 name there (e.g. "
            f"{mismatched[:5]}). wen1225 only applies to the real VoxCeleb1 meta; use wen1251 "
            "for other data"
        )
    return SplitAssignment("wen1225", split_of, excluded)


def _pins(meta: Meta, list_file: Path) -> SplitAssignment:
    split_of, unknown = {}, []
    for lineno, line in enumerate(Path(list_file).read_text(encoding="utf-8-sig").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in _PINS_CODES:
            raise SplitError(f"{list_file}:{lineno}: expected '<VGGFace1 name> <1|2|4>', got {line!r}")
        identity = meta.id_for_name(parts[0])
        if identity is None:
            unknown.append(parts[0])
            continue
        split_of[identity] = _PINS_CODES[parts[1]]
    if not split_of:
        raise SplitError(
            f"none of the names in {list_file} is a VGGFace1 name in {meta.path}; the "
            "pins preset only applies to the real VoxCeleb1 meta"
        )
    excluded = {i: "pins: identity not in the Learnable-PINs list" for i in meta.identities if i not in split_of}
    return SplitAssignment("pins", split_of, excluded)


def _vox2(meta: Meta, test_only: bool) -> SplitAssignment:
    # a row without a usable Set would silently leave its identity out of every split
    unusable = [r for r in meta.identities.values() if r.set not in SET_VALUES]
    if unusable:
        shown = "; ".join(f"line {r.line}: {r.identity} Set={r.set!r}" for r in unusable[:10])
        raise SplitError(
            f"{meta.path}: {len(unusable)} row(s) have no Set value dev or test, which the "
            f"{'vox2test' if test_only else 'vox2'} preset needs to place the identity ({shown}"
            f"{' ...' if len(unusable) > 10 else ''}); fix those rows (the released vox2_meta.csv "
            "has dev or test on every row)"
        )
    split_of, excluded = {}, {}
    for identity, row in meta.identities.items():
        if row.set == "test":
            if test_only and identity in VOX2_TEST_MISSING:
                excluded[identity] = "vox2test: listed as test in the meta but not released"
            else:
                split_of[identity] = "test"
        elif row.set == "dev" and not test_only:
            split_of[identity] = "train"
        else:
            excluded[identity] = f"{'vox2test' if test_only else 'vox2'}: Set={row.set!r}"
    return SplitAssignment("vox2test" if test_only else "vox2", split_of, excluded)


def assign_splits(preset: str, meta: Meta, list_file: str | Path | None = None) -> SplitAssignment:
    """Apply a named preset to a parsed meta file.

    `list_file` overrides the packaged list for `wen1225` / `pins` (e.g. an updated copy).
    """
    expected = PRESETS.get(preset)
    if expected is None:
        raise SplitError(f"unknown split preset {preset!r}; choose one of {sorted(PRESETS)}")
    if meta.dataset != expected:
        raise SplitError(
            f"preset {preset!r} is for {expected} but {meta.path} is a {meta.dataset} "
            f"meta file; for {meta.dataset} use one of "
            f"{sorted(p for p, d in PRESETS.items() if d == meta.dataset)}"
        )
    if preset == "wen1251":
        return _wen1251(meta)
    if preset == "wen1225":
        return _wen1225(meta, Path(list_file) if list_file else WEN1225_FILE)
    if preset == "pins":
        return _pins(meta, Path(list_file) if list_file else PINS_FILE)
    return _vox2(meta, test_only=preset == "vox2test")


def find_leaks(new: Mapping[str, Iterable[str]], existing: Mapping[str, Iterable[str]]) -> list[tuple[str, str, str]]:
    """Identities of a split in `new` that `existing` holds in a *different* split.

    Returns sorted `(identity, new_split, existing_split)`; a split compared with itself (the
    same split being resumed or rebuilt) is not a leak.
    """
    where = {}
    for split, ids in existing.items():
        for identity in ids:
            where.setdefault(identity, set()).add(split)
    leaks = []
    for split, ids in new.items():
        for identity in ids:
            for other in sorted(where.get(identity, ())):
                if other != split:
                    leaks.append((identity, split, other))
    return sorted(leaks)


def check_disjoint(splits: Mapping[str, Iterable[str]]) -> None:
    """Raise `SplitLeakError` naming the identities that appear in more than one split."""
    seen: dict[str, str] = {}
    clashes = []
    for split, ids in splits.items():
        for identity in ids:
            if identity in seen and seen[identity] != split:
                clashes.append(f"{identity} ({seen[identity]} and {split})")
            seen.setdefault(identity, split)
    if clashes:
        raise SplitLeakError(f"{len(clashes)} identities are in more than one split: {', '.join(sorted(clashes)[:10])}")
