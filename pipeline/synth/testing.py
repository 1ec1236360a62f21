"""Test helpers: one tiny corpus per test session, shared by every test module that asks for it.

Usage in any test module::

    import pytest
    from pipeline.synth.testing import cached_corpus

    @pytest.fixture(scope="module")
    def corpus(tmp_path_factory):
        return cached_corpus(tmp_path_factory.getbasetemp())          # clean tiny corpus
        # cached_corpus(base, inject_faults=True) -> same corpus plus faults.json entries

The corpus is generated on first use (about 3 s) and then reused from the session's base temp
folder; a `<name>.done` marker NEXT TO the corpus (never inside it) says it is complete.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .corpus import make_corpus

#: 6 identities per dataset x 2 videos x 1 clip of 1-1.5 s: 24 clips, ~1 MB.
TINY = {
    "identities": 6,
    "videos_per_identity": 2,
    "clips_per_video": 1,
    "seed": 0,
    "min_seconds": 1.0,
    "max_seconds": 1.5,
}


def cached_corpus(base: str | Path, inject_faults: bool = False, **overrides) -> Path:
    """Path of a synthetic corpus with TINY arguments (plus overrides), generated once per base."""
    args = {**TINY, **overrides}
    tag = hashlib.sha1(json.dumps([args, inject_faults], sort_keys=True).encode()).hexdigest()[:10]
    out = Path(base) / f"synth_corpus_{tag}"
    done = Path(base) / f"synth_corpus_{tag}.done"
    if not done.exists():
        make_corpus(out, workers=1, progress=False, inject_faults=inject_faults, **args)
        done.write_text("complete\n")
    return out


def load_ground_truth(corpus: str | Path) -> dict:
    return json.loads((Path(corpus) / "ground_truth.json").read_text(encoding="utf-8"))
