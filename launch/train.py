"""Train baseline / AICANet / BIANet on shard sets with Hugging Face Accelerate.

    accelerate launch launch/train.py --config launch/configs/aicanet_v2f.yaml [section.key=value ...]
    python launch/train.py --config launch/configs/demo.yaml train.max_steps=20      # one process

One training step (see docs/TRAINING.md, "Adversarial order"):

1. one forward of the tuple batch and ``model.loss(out, batch, epoch)`` with ``epoch`` the true
   fractional progress ``batches_done / steps_per_epoch`` (drives AICANet Eq. 2 annealing and the
   BIANet Eq. 22 curriculum);
2. one backward of ``total + disc_total``. The models compute the generator's adversarial term
   through detached discriminator weights and the discriminator's term on detached embeddings
   (models/base.py), so ``total`` reaches only the non-discriminator groups and ``disc_total``
   only the discriminator: one backward gives each optimiser exactly its own gradient, and DDP
   all-reduces once per step;
3. the main Adam steps (every group except the discriminator), then the discriminator's Adam.

The loader is deliberately NOT passed to ``accelerator.prepare()``: it already knows its rank and
world size, and Accelerate would otherwise re-shard or rank-0-dispatch the stream
(docs/REFERENCES.md#s4, #s5). Learning-rate schedulers are not prepared
either (Accelerate steps prepared schedulers once per process, which would make an epoch-based
schedule run ``num_processes`` times too fast).

This file is the driver: :func:`prepare_run` builds, :func:`train` is the loop, :func:`finish`
sums up. The named pieces (state, step, logging window, checkpoint and validation policies,
device choice, preemption) live in ``launch/trainer/``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from launch import checkpoint as ckpt
from launch.config import ConfigError, check_owned_sections, describe_trainer_keys, dump_config, load_config
from launch.logging_utils import RunLogger
from launch.optim import build_optimizers, build_schedulers, move_schedulers, split_param_groups
from launch.runguard import RunLock, RunLockError, stop_with_launcher
from launch.storage import describe as describe_storage_fault
from launch.trainer.device import announce_device, build_accelerator
from launch.trainer.elastic import ElasticSwitch, fresh_rank_seed, load_loader_states, plan_switch
from launch.trainer.policies import Checkpoints, ValidationPolicy
from launch.trainer.preemption import PreemptionFlag
from launch.trainer.state import Schedule, TrainState
from launch.trainer.step import TrainStep
from launch.trainer.window import LogWindow, loader_decoder_summary, raise_if_diverged
from shards.dali_decode import DaliStartupError
from shards.partition import ShardSetError

# ----------------------------------------------------------------------------- builders


def default_model_builder(model_cfg: dict) -> torch.nn.Module:
    import models

    return models.build_model(dict(model_cfg))


def default_loader_builder(data_cfg: dict, rank: int, world_size: int, device):
    from shards.loader import TupleLoader

    return TupleLoader(dict(data_cfg), rank=rank, world_size=world_size, device=device)


def default_validator_builder(cfg: dict, k: int, accelerator):
    from launch.validation import Validator, validation_directions

    tcfg = cfg["train"]
    return Validator(
        tcfg["val_data"],
        cfg["data"],
        k,
        validation_directions(cfg["data"].get("direction", "v2f")),
        seed=tcfg["val_seed"],
        min_trials=tcfg["val_min_trials"],
        batch_size=tcfg["val_batch_size"],
        accelerator=accelerator,
    )


# ----------------------------------------------------------------------------- setup


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Run:
    """Everything the loop needs, built by :func:`prepare_run`."""

    accelerator: object
    step: TrainStep
    loader: object
    schedule: Schedule
    state: TrainState
    checkpoints: Checkpoints
    validation: ValidationPolicy
    logger: RunLogger
    run_dir: Path
    ckpt_root: Path
    device_info: dict


def prepare_run(cfg: dict, dry_run: bool, model_builder, loader_builder, validator_builder) -> Run:
    """Build the accelerator, model, optimisers, loader and validator (in this order: the RNG
    streams depend on it), prepare them, and restore a checkpoint when resuming."""
    settings, optim_cfg = cfg["train"], cfg["optim"]
    accelerator = build_accelerator(settings)
    device_info = announce_device(accelerator, settings["device"])
    rank, world = accelerator.process_index, accelerator.num_processes
    run_dir = Path(settings["output_dir"])
    ckpt_root = run_dir / "checkpoints"
    resume_dir = ckpt.resolve_resume(settings["resume"], ckpt_root)
    if resume_dir is None and not dry_run and ckpt.read_latest(ckpt_root) is not None:
        raise ConfigError(
            f"{run_dir} already holds checkpoints; pass train.resume=auto to continue "
            f"that run, or choose a new train.output_dir"
        )

    # Same seed on every rank for the initial weights; then per-rank streams (dropout etc.).
    seed_everything(settings["seed"])
    model = model_builder(cfg["model"])
    seed_everything(settings["seed"] + 1 + rank)
    groups = split_param_groups(model.param_groups(), model)
    main_opt, disc_opt = build_optimizers(groups, optim_cfg)

    loader = loader_builder(cfg["data"], rank, world, accelerator.device)
    batches_per_epoch = int(loader.steps_per_epoch)
    if batches_per_epoch < 1:
        raise ConfigError(
            f"the training loader has {batches_per_epoch} batches per epoch per process; add "
            f"data, lower data.batch_size or use fewer processes"
        )
    schedule = Schedule.of(batches_per_epoch, settings["grad_accum_steps"], settings["epochs"])
    schedulers = build_schedulers([main_opt, disc_opt], optim_cfg, schedule.optimizer_steps_per_epoch)
    validator = build_validator(cfg, model, accelerator, validator_builder)

    model, main_opt = accelerator.prepare(model, main_opt)
    if disc_opt is not None:
        disc_opt = accelerator.prepare(disc_opt)
    step = TrainStep(
        accelerator,
        model,
        [o for o in (main_opt, disc_opt) if o is not None],
        schedulers,
        optim_cfg["grad_clip"],
        groups,
        check_separation=dry_run,
    )
    state = TrainState()
    switch = restore(resume_dir, step, loader, schedule, state, rank, world, cfg) if resume_dir is not None else None

    writer = (
        None
        if dry_run
        else ckpt.CheckpointWriter(ckpt_root, rank, world, accelerator.wait_for_everyone, settings["keep_last"])
    )
    if accelerator.is_main_process and not dry_run:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_config(cfg))
    logger = RunLogger(
        run_dir,
        accelerator.is_main_process and not dry_run,
        settings["log_with"],
        resume_step=state.step if resume_dir is not None else None,
        hparams=cfg,
    )
    logger.log({"event": "start", "step": state.step, "processes": world, **device_info})
    if resume_dir is not None:
        logger.log({"event": "resume", "step": state.step, "from": str(resume_dir), **(switch.row() if switch else {})})
        accelerator.print(f"resumed from {resume_dir} at step {state.step} (epoch {state.progress(schedule):.3f})")
        if switch is not None:
            accelerator.print(switch.line())
    checkpoints = Checkpoints(
        writer, settings["checkpoint_every"], schedule, step, loader, cfg["model"], cfg["data"], world
    )
    validation = ValidationPolicy(validator, settings["val_every"], schedule, checkpoints, logger)
    return Run(
        accelerator, step, loader, schedule, state, checkpoints, validation, logger, run_dir, ckpt_root, device_info
    )


def build_validator(cfg: dict, model, accelerator, validator_builder):
    """The validator, or None without ``train.val_data``; a K the model cannot score fails now,
    not at the end of the first epoch (before that epoch's checkpoint is written)."""
    settings = cfg["train"]
    if settings["val_data"] is None:
        return None
    from launch.eval.scoring import head_supports

    k = int(getattr(model, "num_candidates", cfg["model"].get("num_candidates", 2)))
    val_k = settings["val_k"] or k
    if not head_supports(model, val_k):
        raise ConfigError(
            f"train.val_k={val_k}: this model's classifier scores K={k} only; set "
            f"train.val_k=null (the model's K) or model.classifier=shared"
        )
    return validator_builder(cfg, val_k, accelerator)


def restore(
    resume_dir: Path, step: TrainStep, loader, schedule: Schedule, state: TrainState, rank: int, world: int, cfg: dict
) -> ElasticSwitch | None:
    """Load weights, optimisers, schedulers, counters, this rank's loader cursor and RNG.

    A checkpoint of another number of processes continues elastically (``launch/trainer/elastic.py``):
    the loader regroups every old rank's state, ``batches_done`` and the schedulers move to the same
    epoch position on this run's schedule; the returned :class:`ElasticSwitch` says how."""
    model_state, trainer_state, rank_state = ckpt.load_trainer_state(resume_dir, rank, world)
    switch = None
    if trainer_state["world_size"] != world:
        switch = plan_switch(
            resume_dir, trainer_state, model_state.get("data_config") or {}, cfg["data"], loader, schedule, world
        )
    elif trainer_state["steps_per_epoch"] != schedule.steps_per_epoch:
        raise ckpt.CheckpointError(
            f"{resume_dir} was written with {trainer_state['steps_per_epoch']} batches per epoch, "
            f"this run has {schedule.steps_per_epoch}: the data or batch settings changed; resume with "
            f"the original config"
        )
    step.core.load_state_dict(model_state["state_dict"])
    for opt, saved in zip(step.optimizers, trainer_state["optimizers"]):
        opt.load_state_dict(saved)
    for sched, saved in zip(step.schedulers, trainer_state["schedulers"]):
        sched.load_state_dict(saved)
    state.step, state.batches_done, state.best = (
        trainer_state["step"],
        trainer_state["batches_done"],
        trainer_state["best"],
    )
    state.last_saved_step = state.step
    if switch is None:
        loader.load_state_dict(rank_state["loader"])
        ckpt.restore_rng_state(rank_state["rng"])
        return None
    state.batches_done = switch.new_batches_done
    move_schedulers(step.schedulers, switch.new_lr_step, schedule.optimizer_steps_per_epoch)
    load_loader_states(loader, rank_state["loader"], resume_dir)
    if rank_state["rng"] is not None:
        ckpt.restore_rng_state(rank_state["rng"])
    else:
        seed_everything(fresh_rank_seed(cfg["train"]["seed"], rank, state.step))
    return switch


class _NoBar:
    """Stands in for the tqdm bar off the main process or with ``train.progress=false``."""

    def update(self, n=1):
        pass

    def set_postfix(self, **kwargs):
        pass

    def write(self, text):
        pass

    def close(self):
        pass


def progress_bar(run: Run, enabled: bool):
    if not (enabled and run.accelerator.is_main_process):
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(
        total=run.schedule.total_batches,
        initial=run.state.batches_done,
        unit="batch",
        dynamic_ncols=True,
        desc=f"train ({run.accelerator.num_processes} proc)",
        disable=None,
    )


def next_batch(window: LogWindow, batches, epoch: int, state: TrainState, schedule: Schedule) -> dict:
    try:
        return window.next_batch(batches)
    except StopIteration:
        raise RuntimeError(
            f"the loader ended epoch {epoch} after "
            f"{state.batches_done - epoch * schedule.steps_per_epoch} batches but promised "
            f"steps_per_epoch={schedule.steps_per_epoch}"
        ) from None


# ----------------------------------------------------------------------------- training


def train(cfg: dict, *, dry_run: bool = False, **builders) -> dict:
    """Run (or resume) one training run; returns the summary printed at the end.

    The run folder has one owner at a time (the main process holds ``run.lock``), and a rank whose
    launcher dies stops at the next step with a checkpoint (``launch.runguard``)."""
    stop_with_launcher()
    owner = is_global_main_process() and not dry_run
    with RunLock(cfg["train"]["output_dir"]) if owner else contextlib.nullcontext() as lock:
        if lock is not None and lock.stale_holder is not None:
            print(
                f"warning: took over {lock.path} from a run that is gone (pid {lock.stale_holder.get('pid')} "
                f"on {lock.stale_holder.get('host')})",
                file=sys.stderr,
            )
        return run_training(cfg, dry_run=dry_run, **builders)


def is_global_main_process() -> bool:
    """Rank 0 of the whole job, known before Accelerate starts (launchers set RANK)."""
    return int(os.environ.get("RANK", "0")) == 0


def run_training(
    cfg: dict,
    *,
    dry_run: bool = False,
    model_builder=default_model_builder,
    loader_builder=default_loader_builder,
    validator_builder=default_validator_builder,
) -> dict:
    """The loop: prepare, step until done or stopped, validate and checkpoint by policy, sum up."""
    run = prepare_run(cfg, dry_run, model_builder, loader_builder, validator_builder)
    accelerator, state, schedule, loader = run.accelerator, run.state, run.schedule, run.loader
    max_steps = 1 if dry_run else cfg["train"]["max_steps"]
    log_every = cfg["train"]["log_every"]
    bar = progress_bar(run, cfg["train"]["progress"])
    window, t_start = LogWindow(), time.perf_counter()
    # The signals stay caught until the run's last write: a second SIGTERM (a launcher forwarding
    # the scheduler's, a repeated parent-death signal) must not kill a rank while it writes the
    # checkpoint or the log's end.
    with PreemptionFlag() as preemption:
        try:
            run.step.core.train()
            while state.batches_done < schedule.total_batches and not state.stop:
                epoch = schedule.epoch_of(state.batches_done)
                if state.batches_done % schedule.steps_per_epoch == 0:
                    loader.set_epoch(epoch)
                batches = iter(loader)
                while state.batches_done < schedule.epoch_end(epoch):
                    batch = next_batch(window, batches, epoch, state, schedule)
                    group = schedule.group(state.batches_done)
                    terms = run.step.accumulate(batch, state.progress(schedule), group)
                    state.tuples_seen += window.add(terms, batch)
                    state.batches_done += 1
                    bar.update(1)
                    if not group.closes:
                        continue
                    run.step.update()
                    state.step += 1

                    log_now = state.step % log_every == 0 or state.batches_done == schedule.total_batches
                    if log_now:
                        row = window.row(accelerator, state.step, state.progress(schedule), run.step.optimizers, loader)
                        run.logger.log(row)
                        raise_if_diverged(row, state.step, lambda: ckpt.read_latest(run.ckpt_root))
                        bar.set_postfix(
                            loss=f"{row.get('loss/total', float('nan')):.4f}", tps=f"{row['tuples_per_s']:.0f}"
                        )
                        window = LogWindow()
                    if max_steps is not None and state.step >= max_steps:
                        state.stop = True
                        break
                    # Asked only where every rank asks (log steps), so the reduce cannot hang.
                    if (log_now or accelerator.num_processes == 1) and preemption.agreed(accelerator):
                        state.stop = state.preempted = True
                        break
                    run.checkpoints.after_step(state)

                if run.validation.due(state):
                    result = run.validation.run(state, run.step.core)
                    name = run.validation.validator.name
                    bar.write(f"epoch {state.progress(schedule):.2f}: {name} = {result[name]:.4f}")
                run.checkpoints.after_epoch(state)
        finally:
            if hasattr(loader, "close"):
                loader.close()  # decode workers and open shard files, also when training fails
        bar.close()
        return finish(run, time.perf_counter() - t_start, dry_run)


def finish(run: Run, elapsed: float, dry_run: bool) -> dict:
    """Wait for every rank, log the end (and a preemption), close the logger; the summary."""
    run.accelerator.wait_for_everyone()
    state, world = run.state, run.accelerator.num_processes
    summary = {
        "steps": state.step,
        "epochs": state.progress(run.schedule),
        "seconds": elapsed,
        "processes": world,
        "tuples_per_s": state.tuples_seen * world / max(elapsed, 1e-9),
        "best": state.best,
        "last_val": state.last_val,
        "output_dir": str(run.run_dir),
        "latest_checkpoint": None if dry_run else str(ckpt.read_latest(run.ckpt_root)),
        "preempted": state.preempted,
        **run.device_info,
        **loader_decoder_summary(run.loader),
    }
    if state.preempted:
        run.logger.log({"event": "preempted", "step": state.step})
    run.logger.log(
        {"event": "end", "step": state.step, **{k: v for k, v in summary.items() if isinstance(v, (int, float))}}
    )
    run.logger.close()
    return summary


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="launch/train.py",
        description="Train baseline / AICANet / BIANet on shard sets (run under `accelerate launch` "
        "for several processes, or plainly for one).",
        epilog="Trainer keys (section.key=value; data.* and model.* are checked by the loader and "
        "models):\n" + describe_trainer_keys(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", required=True, help="preset YAML, e.g. launch/configs/demo.yaml, or a shipped preset's name (demo)"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="config overrides, applied in order (values parsed as YAML)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="build everything, run one step and one validation, write nothing"
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (the same as train.progress=false; bars also hide when the output is not a terminal)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    # intermixed: overrides may come before --config too (the Docker entrypoint puts
    # train.device=cuda first, and a user's later train.device=... wins)
    args = build_parser().parse_intermixed_args(argv)
    cfg: dict = {}
    try:
        cfg = load_config(args.config, [*args.overrides, *(["train.progress=false"] if args.no_progress else [])])
        cfg["model"] = check_owned_sections(cfg)
        if args.print_config:
            print(dump_config(cfg))
            return 0
        summary = train(cfg, dry_run=args.dry_run)
    except (
        ConfigError,
        ckpt.CheckpointError,
        RunLockError,
        FileNotFoundError,
        FloatingPointError,
        DaliStartupError,
        ShardSetError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only, permissions: one line naming the path and the cause
        where = exc.filename or cfg.get("train", {}).get("output_dir", ".")
        print(f"error: {describe_storage_fault(exc, where, 'write')}", file=sys.stderr)
        return 2
    from accelerate.state import PartialState

    if PartialState().is_main_process:
        print(format_summary(summary, dry_run=args.dry_run))
    if summary["preempted"]:
        print(
            f"stopped by a signal at step {summary['steps']} after writing a checkpoint; continue with "
            f"train.resume=auto",
            file=sys.stderr,
        )
        return 3
    return 0


def format_summary(summary: dict, dry_run: bool = False) -> str:
    best = summary["best"]
    lines = [
        "dry run OK (nothing written)"
        if dry_run
        else "training stopped by a signal (checkpoint written)"
        if summary.get("preempted")
        else "training finished",
        f"  steps            {summary['steps']}  (epochs {summary['epochs']:.3f})",
        f"  processes        {summary['processes']}",
        f"  device           {summary.get('device', '?')} ({summary.get('device_name', '?')}), precision "
        f"{summary.get('mixed_precision', '?')}",
        f"  time             {summary['seconds']:.1f} s  ({summary['tuples_per_s']:.1f} tuples/s)",
    ]
    if summary.get("face_decoder"):
        lines.append(
            f"  face decoder     {summary['face_decoder']}"
            f" ({summary.get('dali_fallback_batches', 0)} batches fell back to the CPU decoder)"
        )
    if summary["last_val"]:
        lines.append(
            "  last validation  "
            + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary["last_val"].items())
        )
    if best:
        lines.append(
            f"  best             {best['metric']}={best['value']:.4f} at step {best['step']} "
            f"(epoch {best['epoch']:.2f})"
        )
    if not dry_run:
        lines.append(f"  run folder       {summary['output_dir']}")
        lines.append(f"  latest ckpt      {summary['latest_checkpoint']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
