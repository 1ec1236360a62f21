"""Training loop on CPU with tiny fakes: exact resume, true epoch progress, checkpoint files,
clear errors. (The real model + loader path is covered by test_train_real.py and the slow
end-to-end test.)"""

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from train_fakes import FakeLoader, FakeModel, FakeValidator, fake_config, run_fake

from launch import checkpoint as ckpt
from launch.config import ConfigError
from launch.logging_utils import read_log
from launch.train import train


def losses_by_step(run_dir):
    return {
        r["step"]: {k: v for k, v in r.items() if k.startswith(("loss/", "lr/"))}
        for r in read_log(Path(run_dir) / "train_log.jsonl")
    }


def recording_builders():
    made = {"models": [], "loaders": []}

    def model_builder(cfg):
        made["models"].append(FakeModel(cfg))
        return made["models"][-1]

    def loader_builder(*args, **kwargs):
        made["loaders"].append(FakeLoader(*args, **kwargs))
        return made["loaders"][-1]

    return made, model_builder, loader_builder


@pytest.mark.parametrize("accum", [1, 4])
def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, accum):
    # 6 batches per epoch; with accum=4 the optimiser steps are 4+2 micro-batches per epoch.
    ref = run_fake(fake_config(tmp_path / "a", grad_accum_steps=accum, checkpoint_every=1))
    stop_at = 3  # mid-epoch for both: accum=1 -> epoch 0, batch 3; accum=4 -> epoch 1, after 4 batches
    cfg = fake_config(tmp_path / "b", grad_accum_steps=accum, max_steps=stop_at, checkpoint_every=1)
    first = run_fake(cfg)
    assert first["steps"] == stop_at
    made, mb, lb = recording_builders()
    resumed = train(
        fake_config(tmp_path / "b", grad_accum_steps=accum, resume="auto", checkpoint_every=1),
        model_builder=mb,
        loader_builder=lb,
        validator_builder=FakeValidator,
    )
    assert resumed["steps"] == ref["steps"]
    a, b = losses_by_step(tmp_path / "a" / "run"), losses_by_step(tmp_path / "b" / "run")
    assert sorted(a) == sorted(b) == list(range(1, ref["steps"] + 1))
    assert a == b  # bit-for-bit on CPU: every loss term and every lr at every step
    wa = ckpt.read_model_file(tmp_path / "a" / "run" / "checkpoints" / f"step-{ref['steps']:09d}")
    wb = ckpt.read_model_file(tmp_path / "b" / "run" / "checkpoints" / f"step-{ref['steps']:09d}")
    assert all(torch.equal(wa["state_dict"][k], wb["state_dict"][k]) for k in wa["state_dict"])
    # O(1) resume: the resumed training loader produced only the batches still to do.
    micro_done = first["epochs"] * 6
    assert made["loaders"][0].batches_made == round(3 * 6 - micro_done)


def test_epoch_progress_given_to_the_loss_is_the_true_fraction(tmp_path):
    made, mb, lb = recording_builders()
    train(
        fake_config(tmp_path, epochs=2.5, grad_accum_steps=4),
        model_builder=mb,
        loader_builder=lb,
        validator_builder=FakeValidator,
    )
    assert made["models"][0].epochs_seen == pytest.approx([i / 6 for i in range(15)])
    assert float(made["models"][0].trained_epoch) == pytest.approx(14 / 6)


def test_lr_drops_at_milestones_counted_in_true_epochs(tmp_path):
    run_fake(fake_config(tmp_path, grad_accum_steps=4))  # milestones [2, 3], 2 optimiser steps per epoch
    lrs = {s: v["lr/generator"] for s, v in losses_by_step(tmp_path / "run").items()}
    # the lr logged at step s is the one the next step will use
    assert lrs[1] == pytest.approx(1e-2) and lrs[3] == pytest.approx(1e-2)
    assert lrs[4] == pytest.approx(1e-3) and lrs[5] == pytest.approx(1e-3)


def test_checkpoint_files_load_with_weights_only_and_follow_the_model_format(tmp_path):
    summary = run_fake(fake_config(tmp_path))
    root = tmp_path / "run" / "checkpoints"
    latest = ckpt.read_latest(root)
    assert latest.name == f"step-{summary['steps']:09d}" and (root / "best" / "model.pt").is_file()
    for path in list(latest.glob("*.pt")) + [root / "best" / "model.pt"]:
        torch.load(path, weights_only=True)  # no pickled code anywhere
    payload = torch.load(latest / "model.pt", weights_only=True)
    assert set(payload) == {"format", "model_config", "data_config", "state_dict", "epoch", "step"}
    assert payload["format"] == "voxface-model/1" and payload["epoch"] == 3.0
    assert payload["step"] == summary["steps"] and payload["data_config"]["k"] == 2
    assert sorted(p.name for p in (root / "best").iterdir()) == ["meta.json", "model.pt"]  # weights only
    best = json.loads((root / "best" / "meta.json").read_text())
    assert best["best"]["metric"] == "val/acc_1:2" and best["best"]["value"] == summary["best"]["value"]
    assert len(list(root.glob("step-*"))) == 2  # keep_last


def test_interrupted_save_and_missing_pointer_are_recovered(tmp_path):
    run_fake(fake_config(tmp_path, epochs=2))
    root = tmp_path / "run" / "checkpoints"
    (root / ".tmp-step-000000099").mkdir()  # a save killed half-way
    (root / ".tmp-step-000000099" / "rank-00000.pt").write_bytes(b"partial")
    (root / "latest").unlink()  # killed between the rename and the pointer update
    assert ckpt.read_latest(root).name == "step-000000012"
    summary = train(
        fake_config(tmp_path, epochs=3, resume="auto"),
        model_builder=FakeModel,
        loader_builder=FakeLoader,
        validator_builder=FakeValidator,
    )
    assert summary["steps"] == 18 and not (root / ".tmp-step-000000099").exists()
    rows = read_log(tmp_path / "run" / "train_log.jsonl", event=None)
    assert [r["event"] for r in rows].count("resume") == 1


def test_clear_errors_for_bad_resume_and_reused_folder(tmp_path):
    run_fake(fake_config(tmp_path, epochs=1))
    with pytest.raises(ConfigError, match="already holds checkpoints; pass train.resume=auto"):
        run_fake(fake_config(tmp_path, epochs=1))
    with pytest.raises(ckpt.CheckpointError, match="not a checkpoint folder"):
        run_fake(fake_config(tmp_path, resume=str(tmp_path / "nowhere")))
    latest = ckpt.read_latest(tmp_path / "run" / "checkpoints")
    state = torch.load(latest / "trainer.pt", weights_only=True)
    torch.save({**state, "world_size": 2}, latest / "trainer.pt")
    with pytest.raises(ckpt.CheckpointError, match="missing checkpoint file .*rank-00001.pt"):
        run_fake(fake_config(tmp_path, resume=str(latest)))
    shutil.copy(latest / "rank-00000.pt", latest / "rank-00001.pt")
    with pytest.raises(ckpt.CheckpointError, match="written by 2 processes but this run has 1, and this loader"):
        run_fake(fake_config(tmp_path, resume=str(latest)))  # the fake loader cannot regroup its stream
    (latest / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="cannot read checkpoint file"):
        ckpt.read_model_file(latest)


def test_dry_run_writes_nothing_and_checks_the_detach_contract(tmp_path):
    summary = run_fake(fake_config(tmp_path), dry_run=True)
    assert summary["steps"] == 1 and summary["last_val"] is not None
    assert not (tmp_path / "run").exists()

    class LeakyModel(FakeModel):  # adversarial term through live discriminator weights
        def loss(self, out, batch, epoch):
            terms = super().loss(out, batch, epoch)
            h = out["h_anchor"]
            terms["total"] = terms["total"] + F.cross_entropy(self.discriminator(h), torch.zeros(len(h)).long())
            return terms

    with pytest.raises(RuntimeError, match="puts gradient on the discriminator"):
        train(
            fake_config(tmp_path),
            dry_run=True,
            model_builder=LeakyModel,
            loader_builder=FakeLoader,
            validator_builder=FakeValidator,
        )


def test_sigterm_checkpoints_and_stops_then_resume_continues_exactly(tmp_path):
    import os
    import signal

    class PreemptedLoader(FakeLoader):  # the "cluster" sends SIGTERM while batch 8 is being made
        def _make(self, epoch, index):
            if epoch == 1 and index == 2 and not getattr(PreemptedLoader, "sent", False):
                PreemptedLoader.sent = True
                os.kill(os.getpid(), signal.SIGTERM)
            return super()._make(epoch, index)

    ref = run_fake(fake_config(tmp_path / "a"))
    first = train(
        fake_config(tmp_path / "b"),
        model_builder=FakeModel,
        loader_builder=PreemptedLoader,
        validator_builder=FakeValidator,
    )
    assert first["preempted"] and first["steps"] == 9  # the step in flight finished, then stopped
    assert ckpt.read_latest(tmp_path / "b" / "run" / "checkpoints").name == "step-000000009"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    resumed = train(
        fake_config(tmp_path / "b", resume="auto"),
        model_builder=FakeModel,
        loader_builder=FakeLoader,
        validator_builder=FakeValidator,
    )
    assert not resumed["preempted"] and resumed["steps"] == ref["steps"]
    assert losses_by_step(tmp_path / "a" / "run") == losses_by_step(tmp_path / "b" / "run")


def test_a_second_sigterm_while_the_run_wraps_up_does_not_cut_its_last_writes(tmp_path):
    """A launcher that forwards the scheduler's SIGTERM sends a second one while the ranks write
    their checkpoint and the log's end; it must reach the run's flag, not the default handler
    (which kills the rank). A recorder stands in for the default so an escape is seen, not fatal."""
    import os
    import signal

    escaped = []

    class TwiceSignalled(FakeLoader):
        def _make(self, epoch, index):
            if epoch == 1 and index == 2 and not getattr(TwiceSignalled, "sent", False):
                TwiceSignalled.sent = True
                os.kill(os.getpid(), signal.SIGTERM)
            return super()._make(epoch, index)

        def close(self):  # called as the run wraps up, after the preemption checkpoint
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, lambda *a: escaped.append(a[0]))
    try:
        summary = train(
            fake_config(tmp_path),
            model_builder=FakeModel,
            loader_builder=TwiceSignalled,
            validator_builder=FakeValidator,
        )
    finally:
        handler = signal.signal(signal.SIGTERM, previous)
    assert escaped == [] and summary["preempted"]
    events = [row["event"] for row in read_log(tmp_path / "run" / "train_log.jsonl", event=None)]
    assert events[-2:] == ["preempted", "end"]
    assert handler is not signal.SIG_DFL and handler.__name__ == "<lambda>"  # the caller's handler is back


def test_divergence_stops_with_a_clear_error_and_keeps_checkpoints(tmp_path):
    class Exploding(FakeModel):
        def loss(self, out, batch, epoch):
            terms = super().loss(out, batch, epoch)
            if epoch >= 1.5:
                terms["total"] = terms["total"] * float("inf")
            return terms

    with pytest.raises(FloatingPointError, match="loss/total not finite at step 10"):
        train(
            fake_config(tmp_path), model_builder=Exploding, loader_builder=FakeLoader, validator_builder=FakeValidator
        )
    assert ckpt.read_latest(tmp_path / "run" / "checkpoints").name == "step-000000006"  # end of epoch 0
