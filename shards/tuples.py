"""Turning buffered samples into one batch of k-candidate tuples (a `BatchPlan`, nothing decoded).

The batch is built CLIP-style (docs/REFERENCES.md#s1): B (anchor, positive) pairs of B
*distinct* identities are taken from the buffer; tuple i's candidates are its own positive plus
K-1 positives of other tuples. Each item is decoded once and shared by every tuple that points at
it, so a batch decodes ~2 items per tuple whatever K is (1 + K for a naive loader).

Rules, each enforced here and checked by `shards.batch.check_tuple_batch`:
* exactly one candidate has the anchor's identity; the K-1 negatives have K-1 distinct identities
  different from the anchor's (guaranteed because batch identities are distinct);
* the positive is taken per `positive`: the same clip (same sample gives voice and face), another
  clip of the same video, or a clip of a different video (default: what evaluation measures);
* with `gender_matched`, negatives share the anchor's gender;
* if B < K (or a gender group has fewer than K identities), extra "distractor" samples of other
  identities are added as candidate-only items;
* K = 1 gives balanced verification pairs: floor/ceil(B/2) tuples whose single candidate is the
  positive (label 1), the rest a candidate of another identity (label 0).

Anchors are taken oldest-first from the buffer (so no sample waits forever), partners at random;
all randomness comes from the `rng` passed in, seeded by the loader from (seed, epoch, rank, plan).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np

from shards.buffer import IdentityBuffer
from shards.stream import Sample

__all__ = ["BatchPlan", "plan_batch", "repair_plan", "samples_per_batch"]


@dataclass
class BatchPlan:
    direction: str
    faces: list[Sample]  # unique face items (row order of `faces`)
    voices: list[Sample]  # unique voice items (row order of `voices`)
    voice_crop: list[float]  # per voice item, crop start as a fraction of the free range
    anchor_index: list[int]
    candidate_index: list[list[int]]
    label: list[int]
    face_rows: list[int] | None = None  # after `repair_plan`: old row of each face item
    voice_rows: list[int] | None = None

    @property
    def anchors(self) -> list[Sample]:
        return self.voices if self.direction == "v2f" else self.faces

    @property
    def candidates(self) -> list[Sample]:
        return self.faces if self.direction == "v2f" else self.voices


def samples_per_batch(batch_size: int, positive: str) -> int:
    """Buffered samples one batch consumes (anchors + positives), used for `steps_per_epoch`."""
    return batch_size * (1 if positive == "same_clip" else 2)


def _pairs(
    buffer: IdentityBuffer, batch_size: int, positive: str, rng: np.random.Generator
) -> list[tuple[Sample, Sample]] | None:
    """(anchor, positive) of the first `batch_size` identities, oldest anchor first, or None.

    An anchor is the oldest clip of its identity that has a partner; its partner is drawn
    uniformly from the identity's other clips (oldest first) of the same / another video. The
    draws happen even when the batch falls short: the loader retries with the same `rng` after
    reading more, so what a failed attempt draws shapes the next plan. Counting partners
    (`num_partners`) instead of listing them, and drawing them all in one call (the same numbers
    as one `rng.integers(n)` per anchor), keeps failed attempts cheap; lists are built only for
    the anchors of a batch that is formed.
    """
    if positive == "same_clip":
        anchors: dict[str, Sample] = {}
        for s in buffer.fifo():
            if s.identity not in anchors:
                anchors[s.identity] = s
                if len(anchors) == batch_size:
                    return [(a, a) for a in anchors.values()]
        return None
    same_video = positive == "same_video"
    anchors, bounds = {}, []
    num_partners = buffer.num_partners
    for s in buffer.fifo():
        if s.identity in anchors:
            continue
        n = num_partners(s, same_video)
        if n:
            anchors[s.identity] = s
            bounds.append(n)
            if len(bounds) == batch_size:
                break
    draws = rng.integers(0, np.array(bounds, dtype=np.int64)).tolist() if bounds else []
    if len(bounds) < batch_size:
        return None
    pairs = []
    for anchor, d in zip(anchors.values(), draws):
        options = [
            s
            for s in buffer.of_identity(anchor.identity)
            if s is not anchor and (s.video == anchor.video) == same_video
        ]
        pairs.append((anchor, options[d]))
    return pairs


def plan_batch(
    buffer: IdentityBuffer,
    *,
    batch_size: int,
    k: int,
    direction: str,
    positive: str,
    gender_matched: bool,
    rng: np.random.Generator,
) -> BatchPlan | None:
    """Plan one batch and remove its samples from `buffer`; `None` (buffer untouched) if the
    buffer cannot supply it yet (too few identities with a valid positive)."""
    pairs = _pairs(buffer, batch_size, positive, rng)
    if pairs is None:
        return None
    used = {anchor.identity for anchor, _ in pairs}

    group_of = (lambda s: s.gender) if gender_matched else (lambda s: None)
    if k == 1:
        n_pos = batch_size // 2 + (int(rng.integers(2)) if batch_size % 2 else 0)
        labels = rng.permutation(np.array([1] * n_pos + [0] * (batch_size - n_pos))).tolist()
    else:
        labels = [None] * batch_size

    # Distractors: candidate-only samples so every gender group has enough identities.
    groups: dict[object, int] = {}
    need: dict[object, int] = {}
    for (anchor, _), lab in zip(pairs, labels):
        g = group_of(anchor)
        groups[g] = groups.get(g, 0) + 1
        need[g] = max(need.get(g, 1), k if k >= 2 else (2 if lab == 0 else 1))
    distractors: list[Sample] = []
    missing = {g: need[g] - groups[g] for g in groups if need[g] > groups[g]}
    if missing:
        for s in buffer.fifo():
            g = group_of(s)
            if missing.get(g, 0) > 0 and s.identity not in used:
                distractors.append(s)
                used.add(s.identity)
                missing[g] -= 1
        if any(v > 0 for v in missing.values()):
            return None

    cand_items = [p for _, p in pairs] + distractors  # candidate i (< B) is tuple i's positive
    in_group: dict[object, list[int]] = {}
    for j, s in enumerate(cand_items):
        in_group.setdefault(group_of(s), []).append(j)
    rows: list[list[int]] = []
    final_labels: list[int] = []
    for i, (anchor, _) in enumerate(pairs):
        pool = [j for j in in_group.get(group_of(anchor), ()) if j != i]
        if k == 1:
            if labels[i] == 1:
                rows.append([i])
            else:
                rows.append([pool[int(rng.integers(len(pool)))]])
            final_labels.append(labels[i])
            continue
        if k == 2:  # == rng.choice(len(pool), 1, replace=False): one bounded draw, ~4x cheaper
            negatives = [pool[int(rng.integers(len(pool)))]]
        else:  # choice(n) draws what choice(np.array(pool)) would, without building the array
            negatives = [pool[x] for x in rng.choice(len(pool), size=k - 1, replace=False).tolist()]
        row = [i] + negatives
        order = rng.permutation(k).tolist()
        rows.append([row[o] for o in order])
        final_labels.append(order.index(0))

    # Keep only candidate items some tuple points at, renumbered in first-use order.
    first_use = list(dict.fromkeys(chain.from_iterable(rows)))
    remap = {j: r for r, j in enumerate(first_use)}
    used_cands = [cand_items[j] for j in first_use]
    rows = [list(map(remap.__getitem__, row)) for row in rows]
    anchors = [a for a, _ in pairs]
    for s in {id(s): s for s in [*anchors, *(p for _, p in pairs), *distractors]}.values():
        buffer.remove(s)
    faces, voices = (used_cands, anchors) if direction == "v2f" else (anchors, used_cands)
    return BatchPlan(
        direction=direction,
        faces=faces,
        voices=voices,
        voice_crop=rng.random(len(voices)).tolist(),
        anchor_index=list(range(batch_size)),
        candidate_index=rows,
        label=final_labels,
    )


def repair_plan(
    plan: BatchPlan, bad_faces: set[int], bad_voices: set[int], k: int, gender_matched: bool
) -> BatchPlan | None:
    """Remove items that failed to decode without breaking any tuple invariant.

    A tuple whose anchor or positive is bad is dropped; a bad negative is replaced by another
    decoded candidate of a new identity (same gender group when gender-matched), or the tuple is
    dropped when none is left. Returns None when no tuple survives, so a batch is never empty.
    The result's `face_rows` / `voice_rows` map its items back to the decoded rows.
    """
    v2f = plan.direction == "v2f"
    bad_anchor, bad_cand = (bad_voices, bad_faces) if v2f else (bad_faces, bad_voices)
    anchors, cands = plan.anchors, plan.candidates

    def group(s: Sample):
        return s.gender if gender_matched else None

    kept: list[tuple[int, list[int], int]] = []
    for a, row, lab in zip(plan.anchor_index, plan.candidate_index, plan.label):
        if a in bad_anchor:
            continue
        anchor, row = anchors[a], list(row)
        positive_slot = lab if k >= 2 else (0 if lab == 1 else None)
        if positive_slot is not None and row[positive_slot] in bad_cand:
            continue
        for slot, j in enumerate(row):
            if j not in bad_cand:
                continue
            taken = {cands[x].identity for x in row} | {anchor.identity}
            options = [
                c
                for c in range(len(cands))
                if c not in bad_cand and cands[c].identity not in taken and group(cands[c]) == group(anchor)
            ]
            if not options:
                break
            row[slot] = options[0]
        else:
            kept.append((a, row, lab))
    if not kept:
        return None
    anchor_rows = [a for a, _, _ in kept]
    cand_remap: dict[int, int] = {}
    for _, row, _ in kept:
        for j in row:
            cand_remap.setdefault(j, len(cand_remap))
    cand_rows = sorted(cand_remap, key=cand_remap.get)
    new_anchors = [anchors[a] for a in anchor_rows]
    new_cands = [cands[j] for j in cand_rows]
    face_rows, voice_rows = (cand_rows, anchor_rows) if v2f else (anchor_rows, cand_rows)
    faces, voices = (new_cands, new_anchors) if v2f else (new_anchors, new_cands)
    return BatchPlan(
        direction=plan.direction,
        faces=faces,
        voices=voices,
        voice_crop=[plan.voice_crop[r] for r in voice_rows],
        anchor_index=list(range(len(kept))),
        candidate_index=[[cand_remap[j] for j in row] for _, row, _ in kept],
        label=[lab for _, _, lab in kept],
        face_rows=face_rows,
        voice_rows=voice_rows,
    )
