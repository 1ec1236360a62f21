"""The VoxCeleb metadata and published trial lists shipped inside the package (one owner).

Every default that needs the real VoxCeleb identity tables or a published list reads it through
this module, so a fresh clone, a wheel install and the tests all use the same in-repo copies
(`pipeline/voxceleb_meta/`, provenance and checksums in its README.md). Nothing here reads a path
outside the installed package.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: The folder holding the bundled files (package data of `pipeline`).
META_DIR = Path(__file__).with_name("voxceleb_meta")

_META_FILES = {"voxceleb1": "vox1_meta.csv", "voxceleb2": "vox2_meta.csv"}


class BundledDataError(FileNotFoundError):
    """A bundled file is missing: the install is incomplete (the message says how to repair it)."""


def bundled_path(relative: str) -> Path:
    """The path of one bundled file, e.g. `cmpc_lists/matching_v2f_U.csv.gz`; a clear error if absent."""
    path = META_DIR / relative
    if not path.is_file():
        raise BundledDataError(
            f"bundled data file {relative!r} is missing from {META_DIR}: the package "
            "install is incomplete; reinstall voxface (pip install .)"
        )
    return path


def meta_file(dataset: str) -> Path:
    """The official identity table of `dataset` ("voxceleb1" -> vox1_meta.csv, "voxceleb2" -> vox2_meta.csv)."""
    if dataset not in _META_FILES:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(_META_FILES)}")
    return bundled_path(_META_FILES[dataset])


def default_meta(dataset: str, root: Path) -> Path:
    """The meta file ingest and the doctor read when ``--meta`` is not given: the copy's own
    ``<root>/vox1_meta.csv`` / ``vox2_meta.csv`` when it has one (the synthetic corpus writes its
    own), else the official table bundled here (the VoxCeleb downloads do not include it)."""
    own = Path(root) / _META_FILES[dataset]
    return own if own.is_file() else meta_file(dataset)


def md5(path: Path) -> str:
    """The md5 of a file, as the provenance table in voxceleb_meta/README.md lists it."""
    return hashlib.md5(path.read_bytes()).hexdigest()
