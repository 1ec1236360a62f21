"""Order-independent random streams for the synthetic corpus.

Every random draw in the corpus comes from a generator keyed by the corpus seed plus a path of
names (dataset, identity, video, clip, purpose). Because a stream depends only on its key and not
on how many draws happened before it, the output is byte-identical whatever the number of worker
processes or the order in which jobs finish, and adding fault files never perturbs good files.
"""

from __future__ import annotations

import zlib

import numpy as np


def _key_word(part: object) -> int:
    """Map a key part to a stable 32-bit word (Python's hash() is salted per process)."""
    if isinstance(part, (int, np.integer)):
        return int(part) & 0xFFFFFFFF
    return zlib.crc32(str(part).encode("utf-8"))


def rng_for(seed: int, *key: object) -> np.random.Generator:
    """A numpy Generator for (seed, *key); same inputs give the same stream in any process."""
    words = tuple(_key_word(part) for part in key)
    return np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=words))
