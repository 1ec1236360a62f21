"""Identifiers that look like VoxCeleb's: YouTube ids, VGGFace1 names, VoxCeleb/VGGFace2 ids.

Real quirks are reproduced on purpose because ingest code must survive them: YouTube ids may start
with '-' or '_' (so they look like command-line flags or hidden files), VGGFace1 names may contain
dots ("A.J._Buckley"), and VoxCeleb1 ids are numbered in ASCII order of the names.
"""

from __future__ import annotations

import numpy as np

YTID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh", "th", "br", "tr", "st", "ch")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou", "y")
_CODAS = ("", "", "n", "r", "s", "l", "th", "ck", "nd", "rt", "ss", "m")

#: Wen et al. (DIMNet) letter split of VoxCeleb1 by the first letter of the VGGFace1 name.
WEN_VAL_INITIALS = ("A", "B")
WEN_TEST_INITIALS = ("E", "C", "D")  # E first: E names are also VoxCeleb1's own 'test' Set
WEN_TRAIN_INITIALS = tuple("FGHIJKLMNOPRSTVWY")


def make_ytid(rng: np.random.Generator, index: int) -> str:
    """An 11-character YouTube-like id; every 5th starts with '-', every 5th (offset) with '_'."""
    chars = [YTID_ALPHABET[i] for i in rng.integers(0, len(YTID_ALPHABET), size=11)]
    if index % 5 == 1:
        chars[0] = "-"
    elif index % 5 == 3:
        chars[0] = "_"
    elif chars[0] in "-_":
        chars[0] = "Q"
    return "".join(chars)


def unique_ytids(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    """`count` YouTube-like ids not in `taken` (which is updated)."""
    out = []
    while len(out) < count:
        ytid = make_ytid(rng, len(taken))
        if ytid not in taken:
            taken.add(ytid)
            out.append(ytid)
    return out


def _word(rng: np.random.Generator, initial: str, syllables: int) -> str:
    parts = [initial.lower()]
    if initial.lower() in "aeiouy":  # vowel initial: add a consonant so "E" never stands alone
        parts.append(_ONSETS[int(rng.integers(len(_ONSETS)))])
    parts.append(_VOWELS[int(rng.integers(len(_VOWELS)))])
    for _ in range(syllables - 1):
        parts.append(_ONSETS[int(rng.integers(len(_ONSETS)))])
        parts.append(_VOWELS[int(rng.integers(len(_VOWELS)))])
    parts.append(_CODAS[int(rng.integers(len(_CODAS)))])
    return "".join(parts).capitalize()


def make_name(rng: np.random.Generator, initial: str, dotted: bool) -> str:
    """A VGGFace1-style `First_Last` name beginning with `initial` (`A.J._Last` when dotted)."""
    last_initial = "BCDFGHKLMNPRSTVW"[int(rng.integers(16))]
    last = _word(rng, last_initial, int(rng.integers(2, 4)))
    if dotted:
        second = "ABCDEJKMRT"[int(rng.integers(10))]
        return f"{initial}.{second}._{last}"
    return f"{_word(rng, initial, int(rng.integers(1, 3)))}_{last}"


def split_counts(n: int, val_fraction: float = 0.15, test_fraction: float = 0.25) -> tuple[int, int, int]:
    """(val, test, train) identity counts for the Wen letter split of n VoxCeleb1 identities.

    Targets ~15% val and ~25% test (the real split is 116/193/942 of 1,251, i.e. 9%/15%/75%;
    we over-sample val/test so small corpora still evaluate on several people), with at least one
    identity per split once n >= 3. For n = 40 this gives 6 / 10 / 24.
    """
    if n < 3:
        return (0, 0, n)
    val = max(1, int(round(val_fraction * n)))
    test = max(1, int(round(test_fraction * n)))
    return (val, test, n - val - test)


def vox1_initials(rng: np.random.Generator, n: int) -> list[str]:
    """First letters for n VoxCeleb1 names so that the Wen split has the split_counts() sizes."""
    val, test, train = split_counts(n)
    letters = [WEN_VAL_INITIALS[i % 2] for i in range(val)]
    letters += [WEN_TEST_INITIALS[i % 3] for i in range(test)]
    letters += [WEN_TRAIN_INITIALS[int(rng.integers(len(WEN_TRAIN_INITIALS)))] for _ in range(train)]
    return letters


def wen_split(name: str) -> str:
    """Wen et al. split of a VoxCeleb1 identity from its VGGFace1 name: val / test / train."""
    initial = name[:1].upper()
    if initial in WEN_VAL_INITIALS:
        return "val"
    if initial in WEN_TEST_INITIALS:
        return "test"
    return "train"


def vox2_numbers(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    """(VoxCeleb2 number, VGGFace2 number) pairs: increasing, gappy, sometimes different.

    The real file starts at id00012 and maps 4,883 of 6,114 ids to a different VGGFace2 number
    (e.g. id00134 -> n000140), so code must use the mapping column rather than reuse the digits.
    """
    out, vox, vgg = [], 12, 0
    for i in range(n):
        if i:
            vox += int(rng.integers(1, 6))
        shifted = vox + (int(rng.integers(1, 9)) if rng.random() < 0.4 else 0)
        vgg = max(vgg + 1, shifted)
        out.append((vox, vgg))
    return out
