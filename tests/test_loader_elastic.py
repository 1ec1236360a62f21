"""Elastic resume (issue 12 item 5): loader states saved at world size W resume at W' != W from
the list of every old rank's state, without replaying the stream; what the switch costs is
bounded (docs/LOADER.md, "Elastic resume")."""

import itertools

import pytest

from shards.batch import check_tuple_batch
from shards.loader import TupleLoader
from shards.testing import SyntheticSpec, make_shard_set

K = 3


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    spec = SyntheticSpec(
        num_identities=10, videos_per_identity=3, clips_per_video=4, shard_sizes=[40, 5, 22, 9, 31, 3, 10]
    )
    return str(make_shard_set(tmp_path_factory.mktemp("elastic") / "vox1" / "train", spec))


def _cfg(shard_dir, **kw):
    base = dict(
        shards=[shard_dir],
        batch_size=4,
        k=K,
        buffer_size=24,
        crop_seconds=0.2,
        num_workers=1,
        seed=5,
        direction="both",
        prefetch=1,
        decode_workers="threads",
    )
    base.update(kw)
    return base


def _used(batch):
    """Samples a batch consumed from the buffer: its anchors and their positives."""
    keys = list(batch["anchor_key"])
    keys += [row[lab] for row, lab in zip(batch["candidate_key"], batch["label"].tolist())]
    return keys


def _ident(batch):
    return (
        batch["direction"],
        tuple(batch["anchor_key"]),
        tuple(map(tuple, batch["candidate_key"])),
        tuple(batch["label"].tolist()),
    )


def _run(cfg, world, epoch=0, stop=None, states=None):
    """Each rank's batches (up to `stop` per rank) and states; `states` (a list) resumes elastically."""
    out, saved, reports = [], [], []
    for rank in range(world):
        loader = TupleLoader(cfg, rank=rank, world_size=world)
        if states is not None:
            loader.load_state_dict(states)
        loader.set_epoch(epoch)
        batches = []
        for b in itertools.islice(iter(loader), stop):
            check_tuple_batch(b, k=K)
            b["wrapped_so_far"] = loader.report()["wrapped_reads"]  # re-reads counted up to this batch
            batches.append(b)
        out.append(batches)
        saved.append(loader.state_dict())
        reports.append(loader.report())
        loader.close()
    return out, saved, reports


def _all_keys(shard_dir):
    import json
    from pathlib import Path

    return {json.loads(line)["key"] for line in (Path(shard_dir) / "manifest.jsonl").read_text().splitlines()}


@pytest.mark.parametrize("world,new_world,stop", [(2, 1, 3), (1, 2, 5), (2, 1, 0)])
def test_elastic_resume_uses_the_rest_of_the_epoch_once(shard_dir, world, new_world, stop):
    cfg = _cfg(shard_dir)
    before, states, _ = _run(cfg, world, stop=stop)
    after, after_states, reports = _run(cfg, new_world, states=states)
    used_before = [k for rank in before for b in rank for k in _used(b)]
    used_after = [k for rank in after for b in rank for k in _used(b)]
    wrapped = sum(r["wrapped_reads"] for r in reports)  # counted re-reads at the end of the epoch
    evicted = sum(r["unpaired_evicted"] for r in reports)
    assert len(set(used_before)) == len(used_before)
    # no replay: after the switch the ranks first read what was unread or buffered at the switch;
    # a sample used before comes back only as a counted re-read at the end of the epoch (as in
    # any epoch, when the streams run out), never before the first re-read
    repeated = set(used_before) & set(used_after)
    assert len(repeated) <= wrapped and len(used_after) - len(set(used_after)) <= wrapped
    for rank in after:
        for b in rank:
            if repeated & set(_used(b)):
                assert b["wrapped_so_far"] > 0
    assert not used_before or len(repeated) < len(set(used_before)) // 2  # a replay would repeat them all
    # nothing lost at the switch: what the epoch leaves unused is bounded as in any epoch, by the
    # final buffers and the unpaired evictions
    unused = _all_keys(shard_dir) - set(used_before) - set(used_after)
    assert len(unused) <= new_world * cfg["buffer_size"] + evicted
    # steps: the new ranks continue at floor(step * W / W') of their own steps_per_epoch
    fresh = TupleLoader(cfg, world_size=new_world)
    assert all(len(rank) == fresh.steps_per_epoch - stop * world // new_world for rank in after)
    assert all(s["step"] == fresh.steps_per_epoch for s in after_states)
    assert all(r["elastic_resumes"] == 1 for r in reports)


def test_elastic_resume_is_deterministic_and_resumes_again_exactly(shard_dir):
    cfg = _cfg(shard_dir)
    _, states, _ = _run(cfg, 2, stop=2)
    a, _, _ = _run(cfg, 1, states=states)
    b, _, _ = _run(cfg, 1, states=states)
    assert [_ident(x) for x in a[0]] == [_ident(x) for x in b[0]]
    # a state saved after the elastic resume carries the regrouped pieces: same-size resume is exact
    loader = TupleLoader(cfg)
    loader.load_state_dict(states)
    loader.set_epoch(0)
    head = list(itertools.islice(iter(loader), 3))
    mid = loader.state_dict()
    assert mid["pieces"] is not None
    again = TupleLoader(cfg)
    again.load_state_dict(mid)
    again.set_epoch(0)
    assert [_ident(x) for x in head + list(again)] == [_ident(x) for x in a[0]]
    # and the next epoch is the plain partition again, identical to a run that never switched
    loader.set_epoch(1)
    plain = TupleLoader(cfg)
    plain.set_epoch(1)
    assert [_ident(x) for x in loader] == [_ident(x) for x in plain]


def test_elastic_resume_from_one_rank_of_the_state_set_is_refused(shard_dir):
    cfg = _cfg(shard_dir)
    _, states, _ = _run(cfg, 2, stop=1)
    loader = TupleLoader(cfg)
    with pytest.raises(ValueError, match=r"missing rank\(s\) \[1\]"):
        loader.load_state_dict(states[:1])
    with pytest.raises(ValueError, match="pass the list of every rank's state"):
        loader.load_state_dict(states[0])
    with pytest.raises(ValueError, match="seed"):
        TupleLoader(_cfg(shard_dir, seed=6)).load_state_dict(states)
    # the same layout from the list is this rank's own state: exact resume
    ranks = [TupleLoader(cfg, rank=r, world_size=2) for r in range(2)]
    for r, lo in enumerate(ranks):
        lo.load_state_dict(states)
        assert lo.state_dict()["rank"] == r and lo.state_dict()["step"] == 1


def test_changing_read_streams_is_an_elastic_resume_and_num_workers_alone_is_not(shard_dir):
    _, states, _ = _run(_cfg(shard_dir, read_streams=2), 1, stop=2)
    same, _, _ = _run(_cfg(shard_dir, read_streams=2), 1, stop=None, states=states)
    more_workers, _, _ = _run(_cfg(shard_dir, read_streams=2, num_workers=3), 1, states=[states[0]])
    assert [_ident(x) for x in same[0]] == [_ident(x) for x in more_workers[0]]
    three, _, reports = _run(_cfg(shard_dir, read_streams=3), 1, states=states)
    assert reports[0]["elastic_resumes"] == 1 and len(three[0]) == len(same[0])


def test_a_state_saved_before_read_streams_existed_still_resumes(shard_dir):
    cfg = _cfg(shard_dir)
    reference, _, _ = _run(cfg, 1)
    _, states, _ = _run(cfg, 1, stop=3)
    old = {k: v for k, v in states[0].items() if k not in ("streams_per_rank", "pieces", "backlog")}
    old.update(format="voxface-loader-state/1", num_workers=cfg["num_workers"])
    loader = TupleLoader(cfg)
    loader.load_state_dict(old)
    loader.set_epoch(0)
    assert [_ident(b) for b in reference[0][3:]] == [_ident(b) for b in loader]
