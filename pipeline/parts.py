"""Job-array parts (`--num-parts N --part i`): which shards a part writes, what it records when
it is done, and the checks a merge makes before it writes `index.json`.

Why parts need no coordinator: the shard plan is a pure function of the inputs and settings, so
every part computes the same plan and takes the shards whose ordinal (over the splits in
canonical order, then shard number) is `i mod N`. A part records `.ingest/part-i-of-N.json`
(fingerprint and settings) per split when its shards are published; a merge refuses parts made
with other settings or inputs (naming the difference) and names the parts whose shards are
missing. The shard bytes do not depend on N, so parts are just a way to divide the same work.
"""

from __future__ import annotations

from .shardset import SplitDir, read_json, write_json_atomic


class PartError(RuntimeError):
    """Parts cannot be merged: one was made with other settings or inputs."""


class PartsIncomplete(PartError):
    """Some shards are not written yet: a part is missing, unfinished or still running."""


def part_of(ordinal: int, num_parts: int) -> int:
    return ordinal % num_parts


def marker_name(part: int, num_parts: int) -> str:
    return f"part-{part}-of-{num_parts}.json"


def write_part_marker(
    split_dir: SplitDir, part: int, num_parts: int, fingerprint: str, settings: dict, shards: list[str]
) -> None:
    write_json_atomic(
        split_dir.state / marker_name(part, num_parts),
        {"part": part, "num_parts": num_parts, "fingerprint": fingerprint, "settings": settings, "shards": shards},
    )


def check_parts_complete(split_dir: SplitDir, plan, owner: dict[str, int], num_parts: int, describe_change) -> None:
    """Raise PartError if a part of this split was made with other settings or inputs, and
    PartsIncomplete (naming the parts) if any planned shard is not done. `owner` maps a shard
    name to its part."""
    for marker in sorted(split_dir.state.glob("part-*-of-*.json")):
        info = read_json(marker) or {}
        if info.get("fingerprint") not in (None, plan.fingerprint):
            raise PartError(
                f"cannot merge {split_dir.path}: part {info.get('part')} of {info.get('num_parts')} "
                f"was made with different settings or inputs "
                f"({describe_change(info.get('settings') or {}, plan.settings)}); re-run that part "
                "with the same arguments and inputs as the others"
            )
    missing: dict[int, list[str]] = {}
    for shard in plan.shards:
        if split_dir.shard_done(shard.name, plan.fingerprint) is None:
            missing.setdefault(owner[shard.name], []).append(shard.name)
    if not missing:
        return
    total = {p: sum(1 for s in plan.shards if owner[s.name] == p) for p in missing}
    if num_parts == 1:
        names = missing[0]
        raise PartsIncomplete(
            f"cannot merge {split_dir.path}: {len(names)} of {len(plan.shards)} shards are not "
            f"written ({', '.join(names[:3])}{' ...' if len(names) > 3 else ''}); run the ingest "
            "(same arguments, without --merge) to write them"
        )
    parts = sorted(missing)

    def state(p: int) -> str:
        if (split_dir.state / marker_name(p, num_parts)).exists():
            return "it finished, but these shards are missing or damaged since"
        if any(split_dir.shard_done(s.name, plan.fingerprint) for s in plan.shards if owner[s.name] == p):
            return "unfinished or still running"
        return "missing"

    detail = "; ".join(
        f"part {p}: {state(p)}, {len(missing[p])} of {total[p]} shards not written (e.g. {missing[p][0]})"
        for p in parts
    )
    which = ", ".join(str(p) for p in parts)
    raise PartsIncomplete(
        f"cannot merge {split_dir.path}: part{'s' if len(parts) > 1 else ''} {which} of "
        f"{num_parts} not complete ({detail}); run (or re-run) "
        + " and ".join(f"--part {p}" for p in parts[:4])
        + " with the same arguments, then merge"
    )
