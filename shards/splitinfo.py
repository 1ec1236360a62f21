"""What a split folder says about itself when it has nothing to read: one message for everyone.

An ingest whose every clip of a split is skipped (too short, silent, corrupt) still writes the
split's `index.json` (with `num_samples: 0`) and `report.json`, so a re-run knows it is done.
Training (`shards.partition.ShardCatalog`) and evaluation (`shards.evalstore.EvalStore`) must then
say *that* - the split is empty and why - instead of a raw `ValueError` or advice to re-run an
ingest that would only repeat the same result.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["empty_split_message", "split_sample_count"]


def split_sample_count(folder: str | Path) -> int | None:
    """`num_samples` of the folder's index.json, or None when there is no readable index."""
    try:
        return int(json.loads((Path(folder) / "index.json").read_text())["num_samples"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _skip_summary(folder: Path) -> str:
    try:
        counts = json.loads((folder / "report.json").read_text())["counts"]
    except (OSError, ValueError, KeyError, TypeError):
        return "no report.json to say why"
    kinds = counts.get("skipped_by_kind") or {}
    if not counts.get("planned"):
        return "no clip on disk belonged to its identities (check --root, --meta and the split preset)"
    return (
        f"all {counts['planned']} planned clips were skipped: "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        + f"; details in {folder / 'report.json'}"
    )


def empty_split_message(folder: str | Path, instead: str) -> str:
    """One line for a split folder that holds 0 samples; `instead` is the user's way out."""
    folder = Path(folder)
    return (
        f"{folder} holds 0 samples: the ingest wrote this split but none of its clips was usable "
        f"({_skip_summary(folder)}). Re-running the same ingest cannot change that: fix or replace "
        f"those inputs (or relax the settings that rejected them) and re-ingest with --overwrite, "
        f"or {instead}"
    )
