"""The trainer with the real TupleLoader and the real tiny models on small synthetic shard sets:
exact resume (bit-for-bit on CPU), the detach contract of every model, and the checkpoint that
evaluation loads (`load_model`)."""

import json
from pathlib import Path

import pytest
import torch

from launch import checkpoint as ckpt
from launch.config import MODULE_GROUPS, check_owned_sections, validate
from launch.logging_utils import read_log
from launch.train import train
from pipeline.shardset import SplitDir, build_eval_store
from shards.loader import TupleLoader
from shards.testing import SyntheticSpec, make_shard_set


def add_eval_store(split_dir: Path) -> Path:
    """eval.zarr for a generated shard set, written by ingest's own second pass, so the
    in-training validator can score it."""
    index = json.loads((split_dir / "index.json").read_text())
    build_eval_store(
        SplitDir(split_dir.parent.parent, split_dir.parent.name, split_dir.name),
        [Path(shard["path"]).stem for shard in index["shards"]],
        num_faces=index["num_faces"],
        face_size=index["face_size"],
    )
    return split_dir


@pytest.fixture(scope="module")
def shard_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    common = dict(videos_per_identity=3, clips_per_video=2, face_size=32, dataset="voxceleb1")
    train_dir = make_shard_set(
        root / "voxceleb1" / "train", SyntheticSpec(num_identities=8, split="train", seed=1, **common)
    )
    val_dir = add_eval_store(
        make_shard_set(root / "voxceleb1" / "val", SyntheticSpec(num_identities=5, split="val", seed=2, **common))
    )
    return train_dir, val_dir


def config(shard_sets, out, name="aicanet", **train_overrides):
    tiny = {"face_backbone": "tiny", "voice_backbone": "tiny", "generator_hidden": 32, "embed_dim": 16}
    if name != "baseline":
        tiny["attn_channels"] = 16
    if name == "aicanet":
        tiny["cbp_dim"] = 64
    cfg = validate(
        {
            "data": {
                "shards": [str(shard_sets[0])],
                "k": 2,
                "batch_size": 8,
                "face_size": 32,
                "crop_seconds": 0.5,
                "num_workers": 1,
                "buffer_size": 32,
                "direction": "both",
            },
            "model": {"name": name, **tiny},
            "optim": {"lr": {g: 1e-3 for g in MODULE_GROUPS}, "milestones": [1]},
            "train": {
                "epochs": 2,
                "output_dir": str(out),
                "log_every": 1,
                "progress": False,
                "log_with": [],
                "cpu": True,
                "val_data": str(shard_sets[1]),
                "val_min_trials": 40,
                **train_overrides,
            },
        }
    )
    cfg["model"] = check_owned_sections(cfg)
    return cfg


def test_a_validation_k_the_head_cannot_score_fails_before_training(shard_sets, tmp_path):
    from launch.config import ConfigError

    with pytest.raises(ConfigError, match="train.val_k=3"):
        train(config(shard_sets, tmp_path / "run", name="baseline", val_k=3))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resume_with_real_loader_and_model_equals_uninterrupted(shard_sets, tmp_path):
    steps_per_epoch = TupleLoader(config(shard_sets, tmp_path / "x")["data"]).steps_per_epoch
    assert steps_per_epoch >= 3
    ref = train(config(shard_sets, tmp_path / "a"))
    stop = steps_per_epoch + 1  # mid-epoch 1, after the lr milestone at epoch 1
    train(config(shard_sets, tmp_path / "b", max_steps=stop))
    resumed = train(config(shard_sets, tmp_path / "b", resume="auto"))
    assert resumed["steps"] == ref["steps"] == 2 * steps_per_epoch

    def curve(run):
        return {
            r["step"]: {k: v for k, v in r.items() if k.startswith(("loss/", "lr/"))}
            for r in read_log(Path(run) / "train_log.jsonl")
        }

    a, b = curve(tmp_path / "a"), curve(tmp_path / "b")
    assert sorted(a) == list(range(1, ref["steps"] + 1)) and a == b
    assert {"loss/total", "loss/disc_total", "loss/cls", "loss/metric", "loss/adv"} <= set(a[1])
    assert a[1]["lr/face_encoder"] == 1e-3 and a[ref["steps"]]["lr/face_encoder"] == pytest.approx(1e-4)
    # Validation tuples are fixed: the same weights give the same number in both runs.
    assert ref["last_val"] == resumed["last_val"]


@pytest.mark.parametrize("name", ["baseline", "aicanet", "bianet"])
def test_dry_run_every_model_honours_the_single_backward_contract(shard_sets, tmp_path, name):
    summary = train(config(shard_sets, tmp_path, name=name), dry_run=True)
    val = summary["last_val"]
    assert summary["steps"] == 1 and 0.0 <= val["val/acc_1:2"] <= 1.0
    # direction=both: both directions validated on fixed trials, at least val_min_trials each
    assert val["val/trials/v2f"] >= 40 and val["val/trials/f2v"] >= 40
    assert not tmp_path.joinpath("run").exists()


def test_load_model_rebuilds_the_trained_model(shard_sets, tmp_path):
    cfg = config(shard_sets, tmp_path / "run", name="bianet", epochs=1)
    summary = train(cfg)
    latest = Path(summary["latest_checkpoint"])
    model = ckpt.load_model(latest, "cpu")
    assert not model.training
    payload = ckpt.read_model_file(tmp_path / "run")  # run folder -> best checkpoint
    assert payload["model_config"] == cfg["model"] and payload["data_config"]["face_size"] == 32
    batch = next(iter(TupleLoader(cfg["data"])))
    again = ckpt.load_model(latest / "model.pt")
    assert torch.equal(model.predict(batch), again.predict(batch))
    # The BIANet test-time Eq. 22 weight needs the last training progress: it travels in the weights.
    spe = TupleLoader(cfg["data"]).steps_per_epoch
    assert float(model.trained_epoch) == pytest.approx((spe - 1) / spe)


def test_validator_is_fixed_and_explains_bad_val_data(shard_sets, tmp_path):
    from accelerate import Accelerator

    from launch.config import ConfigError
    from launch.validation import Validator

    cfg = config(shard_sets, tmp_path)
    acc = Accelerator(cpu=True)
    model = __import__("models").build_model(cfg["model"])

    def make(batch_size=16):
        return Validator(
            shard_sets[1], cfg["data"], 2, ["v2f"], seed=5, min_trials=40, batch_size=batch_size, accelerator=acc
        )

    first, again, other_batch = make()(model), make()(model), make(batch_size=3)(model)
    assert first == again == other_batch  # same trials, batch-independent scores
    assert first["val/trials/v2f"] >= 40 and model.training  # train mode restored
    with pytest.raises(ConfigError, match="no evaluation store"):
        Validator(shard_sets[0], cfg["data"], 2, ["v2f"], seed=5, min_trials=10, batch_size=8, accelerator=acc)
    with pytest.raises(ConfigError, match="1:10 validation needs at least 10"):
        Validator(shard_sets[1], cfg["data"], 10, ["v2f"], seed=5, min_trials=10, batch_size=8, accelerator=acc)


def test_validator_counts_non_finite_scores_instead_of_crashing(shard_sets, tmp_path):
    from accelerate import Accelerator

    from launch.validation import Validator

    cfg = config(shard_sets, tmp_path)
    validator = Validator(
        shard_sets[1], cfg["data"], 2, ["v2f"], seed=5, min_trials=20, batch_size=16, accelerator=Accelerator(cpu=True)
    )

    class Diverged(torch.nn.Module):  # what a model blown up by a too-high learning rate returns
        def predict(self, batch):
            return torch.full(batch["candidate_index"].shape, float("nan"))

    result = validator(Diverged())
    assert result["val/acc_1:2"] == 0.5  # all-tied trials: exactly chance, never "best" by accident
    assert result["val/nonfinite_trials/v2f"] == result["val/trials/v2f"]
