"""Every batch the loader yields satisfies the tuple contract, for every direction, K and policy."""

import json

import pytest
import torch

from shards.batch import check_tuple_batch, dense_view
from shards.loader import TupleLoader
from shards.testing import SyntheticSpec, make_shard_set


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    spec = SyntheticSpec(num_identities=12, videos_per_identity=3, clips_per_video=3, shard_sizes=[30, 40, 18, 20])
    return str(make_shard_set(tmp_path_factory.mktemp("tuples") / "vox2" / "train", spec))


def _meta(shard_dir):
    rows = [json.loads(line) for line in open(f"{shard_dir}/manifest.jsonl")]
    return {r["key"]: r for r in rows}


def _cfg(shard_dir, **kw):
    base = dict(shards=[shard_dir], batch_size=6, k=3, buffer_size=48, crop_seconds=0.5, num_workers=2, seed=3)
    base.update(kw)
    return base


@pytest.mark.parametrize("direction, k", [("v2f", 2), ("f2v", 3), ("both", 10), ("v2f", 1), ("f2v", 1)])
def test_every_batch_satisfies_invariants(shard_dir, direction, k):
    loader = TupleLoader(_cfg(shard_dir, direction=direction, k=k))
    batches = list(loader)
    assert len(batches) == loader.steps_per_epoch == 108 // (2 * 6)
    for step, batch in enumerate(batches):
        check_tuple_batch(batch, k=k)
        expected = direction if direction != "both" else ("v2f", "f2v")[step % 2]
        assert batch["direction"] == expected
        assert batch["faces"].shape[1:] == (3, 32, 32) and batch["voices"].shape[1:] == (1, 40, 51)
        dense = dense_view(batch)
        assert dense["candidates"].shape[:2] == (6, k)
        # items are decoded once per batch: at most one anchor + one positive per tuple, plus
        # distractors only when the batch has fewer identities than K
        assert batch["faces"].shape[0] + batch["voices"].shape[0] <= 6 + max(6, k)
    if k == 1:
        labels = torch.cat([b["label"] for b in batches])
        assert labels.sum().item() == len(labels) // 2  # balanced verification pairs
    loader.close()


@pytest.mark.parametrize("positive", ["same_clip", "same_video", "different_video"])
def test_positive_policy(shard_dir, positive):
    meta = _meta(shard_dir)
    loader = TupleLoader(_cfg(shard_dir, positive=positive, k=2))
    n = 0
    for batch in loader:
        check_tuple_batch(batch, k=2)
        for i, lab in enumerate(batch["label"].tolist()):
            a, p = meta[batch["anchor_key"][i]], meta[batch["candidate_key"][i][lab]]
            assert a["identity"] == p["identity"]
            if positive == "same_clip":
                assert a["key"] == p["key"]
            elif positive == "same_video":
                assert a["video"] == p["video"] and a["key"] != p["key"]
            else:
                assert a["video"] != p["video"]
            n += 1
    assert n == loader.steps_per_epoch * 6
    # same_clip consumes one sample per tuple, so the epoch has twice the steps
    assert loader.steps_per_epoch == 108 // (6 if positive == "same_clip" else 12)


def test_gender_matched_negatives(shard_dir):
    loader = TupleLoader(_cfg(shard_dir, k=3, gender_matched_negatives=True))
    for batch in loader:
        check_tuple_batch(batch, k=3, gender_matched=True)
        assert all(g in ("m", "f") for g in batch["anchor_gender"])


def test_small_batches_use_distractors_of_distinct_identities(shard_dir):
    # B = 2 < K = 5: three extra candidate-only identities must be drawn from the buffer
    loader = TupleLoader(_cfg(shard_dir, batch_size=2, k=5, buffer_size=20))
    for batch in loader:
        check_tuple_batch(batch, k=5)
        assert batch["faces"].shape[0] == 5 and batch["voices"].shape[0] == 2


def test_impossible_request_fails_with_advice(tmp_path):
    # one video per identity cannot give different-video positives
    d = make_shard_set(tmp_path / "s", SyntheticSpec(num_identities=4, videos_per_identity=1, clips_per_video=4))
    loader = TupleLoader(dict(shards=[str(d)], batch_size=2, k=2, buffer_size=8, crop_seconds=0.2))
    with pytest.raises(RuntimeError, match="positive policy the data supports"):
        next(iter(loader))


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(k=11), "data.k"),
        (dict(direction="up"), "data.direction"),
        (dict(positive="any"), "data.positive"),
        (dict(buffer_size=4), "buffer_size"),
        (dict(colour="red"), "unknown data config key"),
        (dict(shards=[]), "data.shards"),
        (dict(strict="yes"), "data.strict"),
        (dict(log_mel={"sample_rate": 8000}), "data.log_mel"),  # the rate is the shards', not a setting
    ],
)
def test_config_errors_name_the_key(shard_dir, bad, message):
    with pytest.raises(ValueError, match=message):
        TupleLoader(_cfg(shard_dir, **bad))


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="index.json"):
        TupleLoader(dict(shards=[str(tmp_path)]))


def test_wrapping_in_a_torch_dataloader_is_refused_with_advice(shard_dir):
    loader = TupleLoader(_cfg(shard_dir))
    with pytest.raises(TypeError, match="not a Dataset"):
        next(iter(torch.utils.data.DataLoader(loader)))


def test_cli_streams_checks_and_reports(shard_dir, capsys):
    from shards.loader import main

    main([shard_dir, "--k", "4", "--batch-size", "5", "--buffer-size", "30", "--max-batches", "3"])
    out = capsys.readouterr().out
    assert "3 batches, 15 tuples" in out and "all invariants hold" in out
    assert '"decoded_items_per_tuple": 2.0' in out
    with pytest.raises(SystemExit, match="index.json"):
        main(["/nonexistent/shards"])


def test_too_small_buffer_for_the_identity_count_warns(shard_dir):
    with pytest.warns(UserWarning, match="buffer_size=6 is small for 12 identities"):
        TupleLoader(_cfg(shard_dir, batch_size=2, buffer_size=6, positive="different_video"))


def _random_buffer(rng, capacity=60):
    from shards.buffer import IdentityBuffer
    from shards.stream import Sample

    buffer = IdentityBuffer(capacity)
    for i in range(int(rng.integers(5, capacity))):
        ident, video = f"id{int(rng.integers(12))}", f"v{int(rng.integers(3))}"
        buffer.add(Sample(f"k{i}", ident, video, f"{i}", None, b"f", b"a", (0, i, 1)))
    for s in list(buffer.fifo()):
        if rng.random() < 0.3:
            buffer.remove(s)
    return buffer


def test_partner_counts_follow_adds_and_removes():
    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(30):
        buffer = _random_buffer(rng)
        for s in buffer.fifo():
            same = [o for o in buffer.of_identity(s.identity) if o is not s and o.video == s.video]
            other = [o for o in buffer.of_identity(s.identity) if o.video != s.video]
            assert buffer.num_partners(s, True) == len(same)
            assert buffer.num_partners(s, False) == len(other)


def _reference_pairs(buffer, batch_size, positive, rng):
    """The planner's definition, one scan and one draw per anchor: `_pairs` must pick the same
    pairs and leave `rng` in the same state (the loader retries failed plans with the same rng)."""
    pairs, used = [], set()
    for anchor in buffer.fifo():
        if anchor.identity in used:
            continue
        if positive == "same_clip":
            partner = anchor
        else:
            options = [
                s
                for s in buffer.of_identity(anchor.identity)
                if s is not anchor and (s.video == anchor.video) == (positive == "same_video")
            ]
            if not options:
                continue
            partner = options[int(rng.integers(len(options)))]
        pairs.append((anchor, partner))
        used.add(anchor.identity)
        if len(pairs) == batch_size:
            return pairs
    return None


@pytest.mark.parametrize("positive", ["same_clip", "same_video", "different_video"])
def test_pair_selection_draws_like_one_draw_per_anchor(positive):
    import numpy as np

    from shards.tuples import _pairs

    rng = np.random.default_rng(1)
    outcomes = set()
    for trial in range(60):
        buffer = _random_buffer(rng)
        batch_size = int(rng.integers(1, 12))
        ours, ref = np.random.default_rng([trial, 7]), np.random.default_rng([trial, 7])
        got, want = _pairs(buffer, batch_size, positive, ours), _reference_pairs(buffer, batch_size, positive, ref)
        assert got == want
        assert ours.random() == ref.random()
        outcomes.add(got is None)
    assert outcomes == {True, False}  # both formed and failed attempts were compared


def test_one_negative_draw_matches_numpy_choice():
    """For K = 2 the planner draws its negative with `integers(n)`, which must give the number
    `choice(n, 1, replace=False)` (what the planner drew before) and consume the same bits."""
    import numpy as np

    for trial in range(300):
        n = 1 + trial % 97 if trial % 5 else 200 + 37 * trial
        ours, ref = np.random.default_rng([trial, 3]), np.random.default_rng([trial, 3])
        if trial % 2:  # an odd number of 32-bit draws before, as in a real plan
            ours.integers(5), ref.integers(5)
        assert [int(ours.integers(n))] == ref.choice(n, size=1, replace=False).tolist()
        assert ours.random() == ref.random()
