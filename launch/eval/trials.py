"""Deterministic trial lists (1:K matching with nested negatives, balanced verification pairs).

Why trial *files*: a number in a results table is only meaningful together with the exact trials
it was computed on. Trials are generated once from a seed, saved with a header (seed, split,
source, options, a fingerprint of the evaluation store and a checksum of the trials), and
evaluation only ever reads trial files, so two checkpoints are always compared on the same trials.

Generation rules (per direction, per probe identity, each identity with its own RNG stream
seeded from (seed, direction, identity), so adding an identity elsewhere changes nothing here):

* probes: up to `probes_per_identity` items of the identity that have at least one valid positive;
* positive: another clip of the same identity, from a *different* video (default), the *same*
  video, or *any* video; never the probe's own clip (its face is the same utterance's face);
* negatives: `max_k - 1` *distinct* identities, all different from the probe's (and of the
  probe's gender with `gender_matched`), one random item each, in draw order. The 1:K trial uses
  the first K-1 of them (nested), so the accuracy-vs-K curve is computed on the same probes and
  positives throughout and only difficulty grows with K;
* positive slot: for every K a random position in [0, K) is stored, so a model with a position
  bias is not rewarded (the Wen lists always put the positive first);
* verification: every matching trial yields one positive pair (probe, positive) and one negative
  pair (probe, first negative): balanced by construction, and gender-matched in `G` mode.

Identities that cannot satisfy the rules are skipped and counted in the header's `skipped`.

Two named modes (`TrialOptions.mode`, recorded in the header and in every results table):

* `strict` (default): the rules above, one row per probe, positives from a different video;
* `authors`: the construction of the authors' published V-F lists (AICANet / ACIENet repositories,
  `test_V2F_8vox1_label50.txt`): 8 probe clips per identity and 50 rows per identity (the rows go
  round the probes, 6-7 each, every row with a fresh positive and fresh negatives); the V-F
  positive face comes from the *same video* as the voice (true in 100 % of the published rows),
  the F-V positive voice from any video (the authors' F-V list, DSANet's, has a same-video
  positive in 13 % of its rows, what a random draw gives). Use it whenever numbers are put beside
  the papers' tables; `strict` removes the same-session shortcut and is the harder protocol.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

TRIALS_FORMAT = "voxface-trials/1"
DIRECTIONS = ("v2f", "f2v")
POSITIVE_VIDEO_RULES = ("different", "same", "any")
TRIAL_MODES = ("strict", "authors")
# The authors' lists: 8 probe clips and 50 rows per identity; V-F positives from the probe's video.
AUTHORS_PROBES, AUTHORS_ROWS = 8, 50
AUTHORS_POSITIVE_VIDEO = {"v2f": "same", "f2v": "any"}


@dataclass(frozen=True)
class TrialOptions:
    seed: int = 0
    probes_per_identity: int = 50
    max_k: int = 10
    gender_matched: bool = False
    positive_video: str = "different"
    mode: str = "strict"
    rows_per_identity: int | None = None  # None: one row per probe

    def __post_init__(self):
        if self.max_k < 2:
            raise ValueError(f"max_k must be >= 2, got {self.max_k}")
        if self.probes_per_identity < 1:
            raise ValueError(f"probes_per_identity must be >= 1, got {self.probes_per_identity}")
        if self.positive_video not in POSITIVE_VIDEO_RULES:
            raise ValueError(f"positive_video must be one of {POSITIVE_VIDEO_RULES}, got {self.positive_video!r}")
        if self.mode not in TRIAL_MODES:
            raise ValueError(f"trial mode must be one of {TRIAL_MODES}, got {self.mode!r}")
        if self.rows_per_identity is not None and self.rows_per_identity < 1:
            raise ValueError(f"rows_per_identity must be >= 1, got {self.rows_per_identity}")

    @classmethod
    def authors(cls, seed: int = 0, max_k: int = 10, gender_matched: bool = False) -> TrialOptions:
        """The authors' list construction (module docstring): 8 probes, 50 rows per identity."""
        return cls(
            seed=seed,
            probes_per_identity=AUTHORS_PROBES,
            max_k=max_k,
            gender_matched=gender_matched,
            positive_video=AUTHORS_POSITIVE_VIDEO["v2f"],
            mode="authors",
            rows_per_identity=AUTHORS_ROWS,
        )

    def positive_rule(self, direction: str) -> str:
        """Which video a positive may come from, for `direction`."""
        return AUTHORS_POSITIVE_VIDEO[direction] if self.mode == "authors" else self.positive_video

    def describe(self) -> str:
        """One line for results tables."""
        if self.mode == "authors":
            return (
                f"authors' construction ({self.probes_per_identity} probes, {self.rows_per_identity} rows per "
                "identity; V-F positive from the voice's own video, F-V from any video)"
            )
        rows = f", {self.rows_per_identity} rows per identity" if self.rows_per_identity else ""
        return f"strict (positive from a {self.positive_video} video, up to {self.probes_per_identity} probes{rows})"


class TrialFileError(ValueError):
    """A trial file that is malformed, tampered with, or made for a different store."""


def store_fingerprint(keys, identities, videos) -> str:
    """sha256 over (key, identity, video) of every store row, in store order."""
    h = hashlib.sha256()
    for k, i, v in zip(keys, identities, videos):
        h.update(f"{k}\t{i}\t{v}\n".encode())
    return h.hexdigest()


def _body_checksum(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _stream_seed(*parts) -> np.random.Generator:
    entropy = [p if isinstance(p, int) else zlib.crc32(str(p).encode()) for p in parts]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


@dataclass
class TrialSet:
    """Trials of one split: `match[direction]` and `verify[direction]` lists of dicts."""

    header: dict
    match: dict[str, list[dict]] = field(default_factory=dict)
    verify: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def max_k(self) -> int:
        return int(self.header.get("max_k", 2))

    def identities(self) -> set[str]:
        """Every identity a trial mentions (probes, positives and negatives)."""
        ids: set[str] = set()
        for trials in self.match.values():
            for t in trials:
                ids.add(t["identity"])
                ids.update(t["negative_identities"])
        for trials in self.verify.values():
            for t in trials:
                ids.add(t["identity"])
                ids.add(t["candidate_identity"])
        return ids

    def matching(self, direction: str, k: int):
        """(probe keys [N], candidate keys [N][K], labels int64 [N], probe identities [N]) for 1:K."""
        if not 2 <= k <= self.max_k:
            raise ValueError(f"K={k} outside the trial file's range 2..{self.max_k}")
        probes, cands, labels, ids = [], [], [], []
        for t in self.match.get(direction, []):
            row = list(t["negatives"][: k - 1])
            slot = t["slots"][k - 2]
            row.insert(slot, t["positive"])
            probes.append(t["probe"])
            cands.append(row)
            labels.append(slot)
            ids.append(t["identity"])
        return probes, cands, np.asarray(labels, dtype=np.int64), ids

    def verification(self, direction: str):
        """(probe keys [N], candidate keys [N], labels int64 [N], probe identities [N])."""
        trials = self.verify.get(direction, [])
        return (
            [t["probe"] for t in trials],
            [t["candidate"] for t in trials],
            np.asarray([t["label"] for t in trials], dtype=np.int64),
            [t["identity"] for t in trials],
        )

    def body(self) -> dict:
        return {"match": self.match, "verify": self.verify}

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp + rename); the header carries the body checksum."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = dict(self.header, format=TRIALS_FORMAT, body_sha256=_body_checksum(self.body()))
        self.header = header
        tmp = path.with_name(path.name + ".partial")
        with open(tmp, "w") as fh:
            json.dump({"header": header, **self.body()}, fh, separators=(",", ":"))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, fingerprint: str | None = None) -> TrialSet:
        """Read and verify a trial file; with `fingerprint`, also check it was made for that store."""
        try:
            with open(path) as fh:
                doc = json.load(fh)
        except json.JSONDecodeError as exc:
            raise TrialFileError(f"{path}: not a trial file ({exc})") from None
        header = doc.get("header", {})
        if header.get("format") != TRIALS_FORMAT:
            raise TrialFileError(f"{path}: unknown trial format {header.get('format')!r}")
        trials = cls(header=header, match=doc.get("match", {}), verify=doc.get("verify", {}))
        if _body_checksum(trials.body()) != header.get("body_sha256"):
            raise TrialFileError(f"{path}: checksum mismatch, the trials were modified after saving; regenerate them")
        if fingerprint is not None and header.get("store_fingerprint") != fingerprint:
            raise TrialFileError(
                f"{path}: made for a different evaluation store "
                f"({header.get('store')}); regenerate the trials for this store"
            )
        return trials


def check_disjoint(trials: TrialSet, training_identities) -> None:
    """Raise if any trial identity was seen in training (the protocols test *unseen* identities)."""
    overlap = sorted(trials.identities() & set(training_identities))
    if overlap:
        raise ValueError(
            f"{len(overlap)} trial identities also occur in the training split "
            f"(e.g. {overlap[:5]}); evaluation must use unseen identities"
        )


def _identity_index(identities, genders):
    items = defaultdict(list)
    gender: dict[str, str | None] = {}
    for row, (ident, g) in enumerate(zip(identities, genders)):
        items[ident].append(row)
        gender.setdefault(ident, g)
    return items, gender


def _valid_positives(rows, probe, videos, rule):
    pv = videos[probe]
    if rule == "different":
        return [r for r in rows if videos[r] != pv]
    if rule == "same":
        return [r for r in rows if r != probe and videos[r] == pv]
    return [r for r in rows if r != probe]


def _eligible_probes(rows, videos, rule):
    """Rows that have at least one valid positive, in O(len(rows)) via per-video counts."""
    per_video = Counter(videos[r] for r in rows)
    if rule == "different":
        return list(rows) if len(per_video) > 1 else []
    if rule == "same":
        return [r for r in rows if per_video[videos[r]] > 1]
    return list(rows) if len(rows) > 1 else []


def generate_trials(
    keys,
    identities,
    videos,
    genders,
    options: TrialOptions,
    *,
    split: str,
    store: str = "",
    fingerprint: str | None = None,
) -> TrialSet:
    """Generate matching and verification trials for both directions (see module docstring)."""
    keys, identities, videos = list(keys), list(identities), list(videos)
    genders = list(genders)
    items, gender = _identity_index(identities, genders)
    all_ids = sorted(items)
    if len(all_ids) < options.max_k:
        raise ValueError(
            f"{split}: {len(all_ids)} identities, but 1:{options.max_k} matching needs at "
            f"least {options.max_k} (lower --max-k or use a larger split)"
        )
    match: dict[str, list[dict]] = {}
    verify: dict[str, list[dict]] = {}
    skipped: Counter = Counter()
    for direction in DIRECTIONS:
        m_rows, v_rows = [], []
        rule = options.positive_rule(direction)
        for ident in all_ids:
            rng = _stream_seed(options.seed, direction, ident)
            rows = items[ident]
            eligible = _eligible_probes(rows, videos, rule)
            if not eligible:
                skipped[f"{direction}: identity without a {rule}-video positive"] += 1
                continue
            pool = [i for i in all_ids if i != ident]
            if options.gender_matched:
                if gender[ident] is None:
                    skipped[f"{direction}: identity without gender (gender-matched trials)"] += 1
                    continue
                pool = [i for i in pool if gender[i] == gender[ident]]
            if len(pool) < options.max_k - 1:
                skipped[f"{direction}: fewer than {options.max_k - 1} eligible negative identities"] += 1
                continue
            n = min(options.probes_per_identity, len(eligible))
            probes = [int(p) for p in rng.choice(eligible, size=n, replace=False)]
            n_rows = options.rows_per_identity or n
            for r in range(n_rows):
                probe = probes[r % n]  # round the probes: 50 rows over 8 probes
                positives = _valid_positives(rows, probe, videos, rule)
                positive = positives[int(rng.integers(len(positives)))]
                neg_ids = [pool[j] for j in rng.choice(len(pool), size=options.max_k - 1, replace=False)]
                negs = [items[i][int(rng.integers(len(items[i])))] for i in neg_ids]
                slots = [int(rng.integers(k)) for k in range(2, options.max_k + 1)]
                m_rows.append(
                    {
                        "probe": keys[probe],
                        "positive": keys[positive],
                        "negatives": [keys[r] for r in negs],
                        "negative_identities": neg_ids,
                        "slots": slots,
                        "identity": ident,
                    }
                )
                v_rows.append(
                    {
                        "probe": keys[probe],
                        "candidate": keys[positive],
                        "label": 1,
                        "identity": ident,
                        "candidate_identity": ident,
                    }
                )
                v_rows.append(
                    {
                        "probe": keys[probe],
                        "candidate": keys[negs[0]],
                        "label": 0,
                        "identity": ident,
                        "candidate_identity": neg_ids[0],
                    }
                )
        match[direction], verify[direction] = m_rows, v_rows
    header = {
        "seed": options.seed,
        "split": split,
        "source": "generated",
        "store": store,
        "store_fingerprint": fingerprint or store_fingerprint(keys, identities, videos),
        "options": asdict(options),
        "max_k": options.max_k,
        "counts": {
            f"{task}_{d}": len(sec[d]) for task, sec in (("match", match), ("verify", verify)) for d in DIRECTIONS
        },
        "identities": len(all_ids),
        "skipped": dict(skipped),
    }
    return TrialSet(header=header, match=match, verify=verify)


def generate_for_store(store, options: TrialOptions, split: str) -> TrialSet:
    """`generate_trials` on an `shards.evalstore.EvalStore`."""
    return generate_trials(
        store.keys, store.identities, store.videos, store.genders, options, split=split, store=str(store.path)
    )
