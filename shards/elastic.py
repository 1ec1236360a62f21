"""Elastic resume: continue an epoch checkpointed with world size W on W' ranks (or with another
number of reader streams), without replaying the stream.

Why it is possible: every rank's loader state says exactly what of the epoch is still unread
(each stream's piece list is a function of `(seed, epoch, W x streams)`, and its cursor is a
piece plus a byte offset) and which read samples wait in its buffer (their locations). With the
states of *all* W old ranks, the rest of the epoch is known as a set of byte ranges; we deal
those to the W' x S' new streams, and the old buffers' samples to the new ranks' backlogs (read
first, oldest first). Nothing is replayed and nothing is lost at the switch:

* every sample not yet used in the epoch (unread, or read and buffered) is read once after the
  switch, before any re-read (tested: a sample used before the switch is used again only once
  re-reads have begun at the end of the epoch, as in any epoch, and nothing is missing beyond
  what any epoch leaves unused: the final buffers and unpaired evictions);
* the per-rank step becomes `floor(step x W / W')` (the same number of tuples consumed), so the
  epoch's total batch count differs from an uninterrupted run at W' by at most one per rank;
* what changes is only the *order* after the switch (other buffers, other pairings), which is
  deterministic given the saved states.

A stream already in a re-read pass at the switch (`pass > 0`) has no unread samples left. After
its unread pieces, a new stream's re-read passes cycle its share of the epoch's plain W' x S'
partition (not just the unread rest, which late in an epoch may hold too few identities to pair
positives); a new stream that gets no unread piece starts directly there. Re-reads are counted in
`wrapped_reads` as in any epoch. States saved after an elastic resume carry both piece lists
(`pieces`), so they resume exactly, at W' or elastically again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shards.partition import Piece, ShardCatalog, partition_pieces

__all__ = ["ElasticStart", "regroup", "pieces_to_state", "pieces_from_state", "saved_streams_per_rank"]


@dataclass
class ElasticStart:
    """What one new rank starts from: per stream its unread pieces (first pass) and the pieces its
    re-read passes cycle, its backlog of formerly buffered samples, counters."""

    epoch: int
    step: int
    pieces: list[list[Piece]]
    wrap: list[list[Piece]]
    backlog: list[list[int]]  # [shard, offset, size], oldest first
    stats: Counter = field(default_factory=Counter)
    skips: Counter = field(default_factory=Counter)


def saved_streams_per_rank(state: dict[str, Any]) -> int:
    """Reader streams per rank of a saved state (states before `read_streams` said `num_workers`)."""
    return int(state.get("streams_per_rank", state.get("num_workers")))


def _rows(pieces: list[Piece]) -> list[list]:
    return [[p.shard, p.start, p.stop, p.offset] for p in pieces]


def _pieces(rows: list[list]) -> list[Piece]:
    return [Piece(int(a), int(b), int(c), None if d is None else int(d)) for a, b, c, d in rows]


def pieces_to_state(pieces: list[list[Piece]], wrap: list[list[Piece]]) -> list[dict]:
    return [{"first": _rows(first), "wrap": _rows(cycle)} for first, cycle in zip(pieces, wrap)]


def pieces_from_state(saved: list[dict]) -> tuple[list[list[Piece]], list[list[Piece]]]:
    return [_pieces(s["first"]) for s in saved], [_pieces(s["wrap"]) for s in saved]


def _old_streams(states: list[dict], catalog: ShardCatalog, seed: int, epoch: int) -> list[list[Piece]]:
    """Every old stream's piece list, rank by rank (saved when the old run was itself regrouped)."""
    width = saved_streams_per_rank(states[0])
    world = len(states)
    if all(s.get("pieces") is None for s in states):
        return partition_pieces(catalog, seed, epoch, world * width)
    out = []
    for s in states:
        if s.get("pieces") is None:
            raise ValueError(f"rank {s['rank']}'s loader state lacks the regrouped piece lists the other ranks carry")
        out.extend(pieces_from_state(s["pieces"])[0])
    return out


def _unread(pieces: list[Piece], cursor: dict) -> list[Piece]:
    """What a stream has not read yet in its first pass."""
    if cursor["pass"] > 0:
        return []
    pos, done = int(cursor["piece"]), int(cursor["read_in_piece"])
    if pos >= len(pieces):
        return []
    cur = pieces[pos]
    rest = list(pieces[pos + 1 :])
    if done < cur.num_samples:
        offset = cursor["offset"] if done else cur.offset  # a cursor's offset is where its next sample starts
        rest.insert(0, Piece(cur.shard, cur.start + done, cur.stop, offset))
    return rest


def _deal(pieces: list[Piece], num_streams: int) -> list[list[Piece]]:
    """Pieces to streams, fewest samples first; the largest pieces are halved (the `.idx` gives
    the byte offset of any sample) while there are fewer pieces than streams."""
    pieces = list(pieces)
    while 0 < len(pieces) < num_streams:
        big = max(range(len(pieces)), key=lambda i: (pieces[i].num_samples, -i))
        p = pieces[big]
        if p.num_samples < 2:
            break
        mid = p.start + p.num_samples // 2
        pieces[big : big + 1] = [Piece(p.shard, p.start, mid, p.offset), Piece(p.shard, mid, p.stop)]
    streams: list[list[Piece]] = [[] for _ in range(num_streams)]
    load = [0] * num_streams
    for p in pieces:
        target = min(range(num_streams), key=lambda s: (load[s], s))
        streams[target].append(p)
        load[target] += p.num_samples
    return streams


def check_states(states: list[dict], expected: dict[str, Any], state_formats: tuple[str, ...]) -> None:
    """A complete, consistent set of one old run's rank states, from this data and seed."""
    if not states or not all(isinstance(s, dict) for s in states):
        raise ValueError("elastic resume needs the list of every old rank's loader state (one dict per rank)")
    bad = [s.get("format") for s in states if s.get("format") not in state_formats]
    if bad:
        raise ValueError(f"not TupleLoader states (format {bad[0]!r}, expected one of {list(state_formats)})")
    world = {s.get("world_size") for s in states}
    if len(world) != 1:
        raise ValueError(f"loader states from runs of different world sizes {sorted(world)}: pass one run's states")
    world = world.pop()
    ranks = sorted(s.get("rank") for s in states)
    if ranks != list(range(world)):
        missing = sorted(set(range(world)) - set(ranks))
        raise ValueError(
            f"elastic resume needs the loader state of every rank of the old run (world size {world}): "
            f"missing rank(s) {missing}" + (f", duplicated {ranks}" if not missing else "")
        )
    for key in ("epoch", "step", "seed", "buffer_size", "data"):
        values = {repr(s.get(key)) for s in states}
        if len(values) != 1:
            raise ValueError(f"the old ranks' loader states disagree on {key!r} ({sorted(values)}): not one checkpoint")
    diff = {k: (states[0].get(k), v) for k, v in expected.items() if states[0].get(k) != v}
    if diff:
        raise ValueError(
            f"loader states do not match this loader (saved, now): {diff}; an elastic resume may change "
            "the world size and data.read_streams / num_workers, not the data, seed or buffer_size"
        )


def regroup(
    states: list[dict],
    catalog: ShardCatalog,
    seed: int,
    world_size: int,
    rank: int,
    streams_per_rank: int,
    steps_per_epoch_new: int,
    old_steps_per_epoch: int,
) -> ElasticStart:
    """This rank's share of the rest of the old run's epoch (see the module docstring)."""
    states = sorted(states, key=lambda s: s["rank"])
    epoch, step, old_world = int(states[0]["epoch"]), int(states[0]["step"]), len(states)
    old = _old_streams(states, catalog, seed, epoch)
    width = saved_streams_per_rank(states[0])
    unread: list[Piece] = []
    for r, s in enumerate(states):
        for pieces, cursor in zip(old[r * width : (r + 1) * width], s["streams"], strict=True):
            unread.extend(_unread(pieces, cursor))
    if step >= old_steps_per_epoch:  # saved at the end of the epoch: set_epoch(next) starts afresh
        new_step = steps_per_epoch_new
    else:
        new_step = min(steps_per_epoch_new, step * old_world // world_size)
    mine = _deal(unread, world_size * streams_per_rank)[rank * streams_per_rank : (rank + 1) * streams_per_rank]
    plain = partition_pieces(catalog, seed, epoch, world_size * streams_per_rank)
    wrap = plain[rank * streams_per_rank : (rank + 1) * streams_per_rank]
    buffered = sorted(
        ((seq, r, [shard, offset, size]) for r, s in enumerate(states) for shard, offset, size, seq in s["buffer"]),
        key=lambda t: (t[0], t[1]),
    )
    backlog = [loc for _, _, loc in buffered[rank::world_size]]
    stats, skips = Counter(), Counter()
    for r, s in enumerate(states):
        if r % world_size == rank:
            stats.update(s.get("stats", {}))
            skips.update(s.get("skips", {}))
    return ElasticStart(epoch, new_step, mine, wrap, backlog, stats, skips)
