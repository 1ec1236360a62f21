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
(docs/REFERENCES.md#s4). Learning-rate schedulers are not prepared
either (Accelerate steps prepared schedulers once per process, which would make an epoch-based
schedule run ``num_processes`` times too fast).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from launch import checkpoint as ckpt
from launch.config import ConfigError, check_owned_sections, describe_trainer_keys, dump_config, load_config
from launch.logging_utils import RunLogger
from launch.optim import build_optimizers, build_schedulers, current_lrs, split_param_groups
from launch.runguard import RunLock, RunLockError, stop_with_launcher
from launch.storage import describe as describe_storage_fault
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
    return Validator(tcfg["val_data"], cfg["data"], k, validation_directions(cfg["data"].get("direction", "v2f")),
                     seed=tcfg["val_seed"], min_trials=tcfg["val_min_trials"], batch_size=tcfg["val_batch_size"],
                     accelerator=accelerator)


# ----------------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_mixed_precision(setting: str, device: torch.device) -> str:
    if setting != "auto":
        return setting
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def loader_skip_counts(loader) -> dict:
    """The loader's read-time skip counters, flattened for logging ({} if it exposes none)."""
    counts = getattr(loader, "skip_counts", None)
    if callable(counts):
        counts = counts()
    if not isinstance(counts, dict):
        return {}
    return {f"skipped/{k}": int(v) for k, v in counts.items() if isinstance(v, (int, float))}


class PreemptionFlag:
    """SIGTERM / SIGUSR1 (cluster preemption, ``kill``, ``scancel --signal``) ask the run to stop:
    the current step finishes, a checkpoint is written, and the process exits with code 3 so a
    scheduler can requeue it with ``train.resume=auto``. With several processes the flag is
    OR-reduced, so all ranks stop at the same step even if only one received the signal; the loop
    asks only at log steps, where it synchronises anyway (a reduce plus `.item()` every step would
    stall the CPU on the GPU), so a stop can come up to ``train.log_every`` steps later."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.signum = None
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.signum = signum

    def agreed(self, accelerator) -> bool:
        if accelerator.num_processes == 1:
            return self.signum is not None  # no device tensor: no host sync
        flag = torch.tensor([0.0 if self.signum is None else 1.0], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def check_gradient_separation(model, terms: dict, groups: dict) -> None:
    """Dry-run check of the contract the single backward relies on: ``total`` gives no gradient
    to the discriminator and ``disc_total`` none to any other group."""
    disc = groups.get("discriminator") or []
    others = [p for name, ps in groups.items() if name != "discriminator" for p in ps]
    if not disc or not terms["disc_total"].requires_grad:
        return
    for loss_name, params, what in (("total", disc, "the discriminator"),
                                    ("disc_total", others, "non-discriminator groups")):
        grads = torch.autograd.grad(terms[loss_name], params, retain_graph=True, allow_unused=True)
        leak = max((float(g.abs().max()) for g in grads if g is not None), default=0.0)
        if leak > 0:
            raise RuntimeError(f"model.loss()['{loss_name}'] puts gradient on {what} (max |g| = "
                               f"{leak:.3g}); the trainer's single backward needs the detach contract "
                               f"of ARCHITECTURE.md §5 / docs/MODELS.md")


# ----------------------------------------------------------------------------- training


def train(cfg: dict, *, dry_run: bool = False, **builders) -> dict:
    """Run (or resume) one training run; returns the summary printed at the end.

    The run folder has one owner at a time (the main process holds ``run.lock``), and a rank whose
    launcher dies stops at the next step with a checkpoint (``launch.runguard``)."""
    stop_with_launcher()
    owner = is_global_main_process() and not dry_run
    with RunLock(cfg["train"]["output_dir"]) if owner else contextlib.nullcontext() as lock:
        if lock is not None and lock.stale_holder is not None:
            print(f"warning: took over {lock.path} from a run that is gone (pid {lock.stale_holder.get('pid')} "
                  f"on {lock.stale_holder.get('host')})", file=sys.stderr)
        return _train(cfg, dry_run=dry_run, **builders)


def is_global_main_process() -> bool:
    """Rank 0 of the whole job, known before Accelerate starts (launchers set RANK)."""
    return int(os.environ.get("RANK", "0")) == 0


def _train(cfg: dict, *, dry_run: bool = False, model_builder=default_model_builder,
           loader_builder=default_loader_builder, validator_builder=default_validator_builder) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    tcfg, ocfg = cfg["train"], cfg["optim"]
    probe_device = torch.device("cuda" if torch.cuda.is_available() and not tcfg["cpu"] else "cpu")
    accelerator = Accelerator(
        cpu=tcfg["cpu"],
        mixed_precision=resolve_mixed_precision(tcfg["mixed_precision"], probe_device),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=tcfg["find_unused_parameters"])],
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    is_main = accelerator.is_main_process
    run_dir = Path(tcfg["output_dir"])
    ckpt_root = run_dir / "checkpoints"

    resume_dir = ckpt.resolve_resume(tcfg["resume"], ckpt_root)
    if resume_dir is None and not dry_run and ckpt.read_latest(ckpt_root) is not None:
        raise ConfigError(f"{run_dir} already holds checkpoints; pass train.resume=auto to continue "
                          f"that run, or choose a new train.output_dir")

    # Same seed on every rank for the initial weights; then per-rank streams (dropout etc.).
    seed_everything(tcfg["seed"])
    model = model_builder(cfg["model"])
    seed_everything(tcfg["seed"] + 1 + rank)
    groups = split_param_groups(model.param_groups(), model)
    main_opt, disc_opt = build_optimizers(groups, ocfg)

    loader = loader_builder(cfg["data"], rank, world, accelerator.device)
    spe = int(loader.steps_per_epoch)
    if spe < 1:
        raise ConfigError(f"the training loader has {spe} batches per epoch per process; add data, "
                          f"lower data.batch_size or use fewer processes")
    accum = tcfg["grad_accum_steps"]
    opt_steps_per_epoch = math.ceil(spe / accum)
    schedulers = build_schedulers([main_opt, disc_opt], ocfg, opt_steps_per_epoch)
    total_batches = max(1, round(tcfg["epochs"] * spe))

    validator = None
    k = int(getattr(model, "num_candidates", cfg["model"].get("num_candidates", 2)))
    if tcfg["val_data"] is not None:
        from launch.eval.scoring import head_supports

        val_k = tcfg["val_k"] or k
        # Validation scores with model.predict; a K it cannot score would otherwise only fail at the
        # end of the first epoch, before that epoch's checkpoint is written.
        if not head_supports(model, val_k):
            raise ConfigError(f"train.val_k={val_k}: this model's classifier scores K={k} only; set "
                              f"train.val_k=null (the model's K) or model.classifier=shared")
        validator = validator_builder(cfg, val_k, accelerator)

    model, main_opt = accelerator.prepare(model, main_opt)
    if disc_opt is not None:
        disc_opt = accelerator.prepare(disc_opt)
    core = accelerator.unwrap_model(model)
    optimizers = [o for o in (main_opt, disc_opt) if o is not None]

    step, batches_done, best = 0, 0, None
    if resume_dir is not None:
        model_state, trainer_state, rank_state = ckpt.load_trainer_state(resume_dir, rank, world)
        core.load_state_dict(model_state["state_dict"])
        for opt, state in zip(optimizers, trainer_state["optimizers"]):
            opt.load_state_dict(state)
        for sched, state in zip(schedulers, trainer_state["schedulers"]):
            sched.load_state_dict(state)
        step, batches_done, best = trainer_state["step"], trainer_state["batches_done"], trainer_state["best"]
        if trainer_state["steps_per_epoch"] != spe:
            raise ckpt.CheckpointError(
                f"{resume_dir} was written with {trainer_state['steps_per_epoch']} batches per epoch, "
                f"this run has {spe}: the data or batch settings changed; resume with the original config")
        loader.load_state_dict(rank_state["loader"])
        ckpt.restore_rng_state(rank_state["rng"])

    writer = None if dry_run else ckpt.CheckpointWriter(ckpt_root, rank, world, accelerator.wait_for_everyone,
                                                        tcfg["keep_last"])
    if is_main and not dry_run:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_config(cfg))
    logger = RunLogger(run_dir, is_main and not dry_run, tcfg["log_with"],
                       resume_step=step if resume_dir is not None else None, hparams=cfg)
    if resume_dir is not None:
        logger.log({"event": "resume", "step": step, "from": str(resume_dir)})
        accelerator.print(f"resumed from {resume_dir} at step {step} "
                          f"(epoch {batches_done / spe:.3f})")

    def save(name: str, mark_latest: bool = True, model_only: bool = False) -> Path:
        payload = ckpt.model_payload(core, getattr(core, "cfg", cfg["model"]), cfg["data"],
                                     batches_done / spe, step)
        trainer_state = None if model_only else {
            "optimizers": [o.state_dict() for o in optimizers],
            "schedulers": [s.state_dict() for s in schedulers],
            "step": step, "batches_done": batches_done, "best": best, "world_size": world,
            "steps_per_epoch": spe, "grad_accum_steps": accum,
        }
        rank_state = None if model_only else {"rng": ckpt.capture_rng_state(), "loader": loader.state_dict()}
        return writer.save(name, model=payload, trainer=trainer_state, rank_state=rank_state,
                           meta={"step": step, "epoch": batches_done / spe, "best": best},
                           mark_latest=mark_latest)

    def run_validation() -> dict:
        result = validator(core)
        nonlocal best
        metric = result[validator.name]
        improved = best is None or (math.isfinite(metric) and metric > best["value"])
        if improved:
            best = {"metric": validator.name, "value": metric, "step": step, "epoch": batches_done / spe}
            if writer is not None:
                save(ckpt.BEST_NAME, mark_latest=False, model_only=True)
        logger.log({"event": "val", "step": step, "epoch": batches_done / spe, **result,
                    "best": best["value"]})
        return result

    # ---- the loop -------------------------------------------------------------------------------
    max_steps = 1 if dry_run else tcfg["max_steps"]
    bar = None
    if is_main and tcfg["progress"]:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_batches, initial=batches_done, unit="batch", dynamic_ncols=True,
                   desc=f"train ({world} proc)")
    window = {"terms": {}, "n": 0, "tuples": 0, "data_s": 0.0, "t0": time.perf_counter()}
    last_val, last_saved_step = None, step if resume_dir is not None else -1
    tuples_seen, t_start = 0, time.perf_counter()
    stop = preempted = False
    preemption = PreemptionFlag()
    try:
        core.train()
        while batches_done < total_batches and not stop:
            epoch = batches_done // spe
            epoch_end = min((epoch + 1) * spe, total_batches)
            if batches_done % spe == 0:
                loader.set_epoch(epoch)
            stream = iter(loader)
            while batches_done < epoch_end:
                t0 = time.perf_counter()
                try:
                    batch = next(stream)
                except StopIteration:
                    raise RuntimeError(f"the loader ended epoch {epoch} after {batches_done - epoch * spe} "
                                       f"batches but promised steps_per_epoch={spe}") from None
                window["data_s"] += time.perf_counter() - t0
                in_epoch = batches_done - epoch * spe
                group_start = (in_epoch // accum) * accum
                group_size = min(accum, epoch_end - epoch * spe - group_start)
                sync_now = in_epoch - group_start == group_size - 1
                progress = batches_done / spe
                sync_ctx = contextlib.nullcontext() if sync_now or world == 1 else accelerator.no_sync(model)
                with sync_ctx:
                    with accelerator.autocast():
                        out = model(batch)
                        terms = core.loss(out, batch, progress)
                    if dry_run:
                        check_gradient_separation(core, terms, groups)
                    accelerator.backward((terms["total"] + terms["disc_total"]) / group_size)
                n_tuples = int(batch["label"].shape[0])
                window["tuples"] += n_tuples
                tuples_seen += n_tuples
                for name, value in terms.items():
                    if torch.is_tensor(value) and value.numel() == 1:
                        window["terms"][name] = window["terms"].get(name, 0.0) + value.detach().float()
                window["n"] += 1
                batches_done += 1
                if bar is not None:
                    bar.update(1)
                if not sync_now:
                    continue

                if ocfg["grad_clip"] is not None:
                    for opt in optimizers:
                        params = [p for g in opt.param_groups for p in g["params"]]
                        accelerator.clip_grad_norm_(params, ocfg["grad_clip"])
                for opt in optimizers:
                    opt.step()
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                for sched in schedulers:
                    sched.step()
                step += 1

                log_step = step % tcfg["log_every"] == 0 or batches_done == total_batches
                if log_step:
                    row = make_log_row(accelerator, window, step, batches_done / spe, optimizers, loader)
                    logger.log(row)
                    diverged = [k for k, v in row.items() if k.startswith("loss/") and not math.isfinite(v)]
                    if diverged:  # same row on every rank (reduced), so every rank stops here
                        raise FloatingPointError(
                            f"training diverged: {', '.join(diverged)} not finite at step {step}. Nothing "
                            f"was saved after the last checkpoint ({ckpt.read_latest(ckpt_root)}). Lower "
                            f"optim.lr.* or set optim.grad_clip, then start again or resume from it.")
                    if bar is not None:
                        bar.set_postfix(loss=f"{row.get('loss/total', float('nan')):.4f}",
                                        tps=f"{row['tuples_per_s']:.0f}")
                    window = {"terms": {}, "n": 0, "tuples": 0, "data_s": 0.0, "t0": time.perf_counter()}
                if max_steps is not None and step >= max_steps:
                    stop = True
                    break
                if (log_step or world == 1) and preemption.agreed(accelerator):  # same condition on every rank
                    stop = preempted = True
                    break
                if writer is not None and tcfg["checkpoint_every"] and step % tcfg["checkpoint_every"] == 0:
                    save(f"step-{step:09d}")
                    last_saved_step = step

            epoch_finished = batches_done % spe == 0 or batches_done == total_batches
            if validator is not None and (epoch_finished or stop) and not preempted:
                epochs_done = batches_done / spe
                due = stop or batches_done == total_batches or (batches_done // spe) % tcfg["val_every"] == 0
                if due:
                    last_val = run_validation()
                    core.train()
                    if bar is not None:
                        bar.write(f"epoch {epochs_done:.2f}: {validator.name} = {last_val[validator.name]:.4f}")
            if writer is not None and step != last_saved_step and (epoch_finished or stop):
                save(f"step-{step:09d}")
                last_saved_step = step
    finally:
        preemption.restore()
        if hasattr(loader, "close"):
            loader.close()  # decode workers and open shard files, also when training fails
    if bar is not None:
        bar.close()
    accelerator.wait_for_everyone()
    elapsed = time.perf_counter() - t_start
    summary = {
        "steps": step, "epochs": batches_done / spe, "seconds": elapsed, "processes": world,
        "tuples_per_s": tuples_seen * world / max(elapsed, 1e-9),
        "best": best, "last_val": last_val, "output_dir": str(run_dir),
        "latest_checkpoint": None if dry_run else str(ckpt.read_latest(ckpt_root)),
        "preempted": preempted,
    }
    if preempted:
        logger.log({"event": "preempted", "step": step})
    logger.log({"event": "end", "step": step, **{k: v for k, v in summary.items()
                                                  if isinstance(v, (int, float))}})
    logger.close()
    return summary


def make_log_row(accelerator, window: dict, step: int, epoch: float, optimizers, loader) -> dict:
    """Mean of every loss term over the window and over ranks, plus lrs, speed and counters."""
    names = sorted(window["terms"])
    device = accelerator.device
    local = torch.stack([window["terms"][n].to(device) / max(window["n"], 1) for n in names]) if names \
        else torch.zeros(0, device=device)
    mean = accelerator.reduce(local, reduction="mean") if accelerator.num_processes > 1 else local
    seconds = max(time.perf_counter() - window["t0"], 1e-9)
    row = {"event": "train", "step": step, "epoch": epoch}
    row.update({f"loss/{n}": float(v) for n, v in zip(names, mean.tolist())})
    row.update(current_lrs(optimizers))
    row["tuples_per_s"] = window["tuples"] * accelerator.num_processes / seconds
    row["loader_share"] = window["data_s"] / seconds
    if torch.cuda.is_available() and device.type == "cuda":
        row["gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    row.update(loader_skip_counts(loader))
    report = getattr(loader, "report", None)
    if callable(report):
        info = report()
        for key in ("coverage", "decoded_items_per_tuple"):
            if isinstance(info.get(key), (int, float)):
                row[f"loader/{key}"] = float(info[key])
    return row


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
    parser.add_argument("--config", required=True,
                        help="preset YAML, e.g. launch/configs/demo.yaml, or a shipped preset's name (demo)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="config overrides, applied in order (values parsed as YAML)")
    parser.add_argument("--dry-run", action="store_true",
                        help="build everything, run one step and one validation, write nothing")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (the same as train.progress=false; bars also hide when the "
                             "output is not a terminal)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg: dict = {}
    try:
        cfg = load_config(args.config, [*args.overrides, *(["train.progress=false"] if args.no_progress else [])])
        cfg["model"] = check_owned_sections(cfg)
        if args.print_config:
            print(dump_config(cfg))
            return 0
        summary = train(cfg, dry_run=args.dry_run)
    except (ConfigError, ckpt.CheckpointError, RunLockError, FileNotFoundError, FloatingPointError,
            ShardSetError) as exc:
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
        print(f"stopped by a signal at step {summary['steps']} after writing a checkpoint; continue with "
              f"train.resume=auto", file=sys.stderr)
        return 3
    return 0


def format_summary(summary: dict, dry_run: bool = False) -> str:
    best = summary["best"]
    lines = [
        "dry run OK (nothing written)" if dry_run else
        "training stopped by a signal (checkpoint written)" if summary.get("preempted") else "training finished",
        f"  steps            {summary['steps']}  (epochs {summary['epochs']:.3f})",
        f"  processes        {summary['processes']}",
        f"  time             {summary['seconds']:.1f} s  ({summary['tuples_per_s']:.1f} tuples/s)",
    ]
    if summary["last_val"]:
        lines.append("  last validation  " + ", ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary["last_val"].items()))
    if best:
        lines.append(f"  best             {best['metric']}={best['value']:.4f} at step {best['step']} "
                     f"(epoch {best['epoch']:.2f})")
    if not dry_run:
        lines.append(f"  run folder       {summary['output_dir']}")
        lines.append(f"  latest ckpt      {summary['latest_checkpoint']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
