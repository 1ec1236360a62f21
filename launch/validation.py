"""In-training validation: 1:K accuracy on fixed VALIDATION trials, the ``best`` checkpoint's metric.

Why the val split's ``eval.zarr`` and the evaluation harness's trial generator rather than the
training loader: the trials are then exactly the kind evaluation reports (nested negatives of
distinct identities, positive from a different video, random positive slot, centred audio crop
and middle face frame: launch/eval), they are fixed for the whole run (comparable across epochs
and across resumes), and they split evenly over any number of processes — a streaming loader
partitions *shards* over ranks, which on a small val split can leave a rank without enough
identities to form a batch.

A small val split yields few trials per seed (at most one probe per clip), so seeded trial sets
(seed, seed + 1, ...) are added until ``min_trials`` per direction is reached: new positives,
negatives and slots for the same probes, a steadier estimate of the same quantity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from launch.config import ConfigError

MAX_ROUNDS = 50


def eval_store_path(val_data) -> Path:
    """``train.val_data`` (a split folder with ``eval.zarr``, or the ``.zarr`` itself) → store path."""
    if isinstance(val_data, (list, tuple)):
        if len(val_data) != 1:
            raise ConfigError(f"train.val_data must name one validation split folder, got {val_data}")
        val_data = val_data[0]
    path = Path(val_data)
    store = path if path.suffix == ".zarr" else path / "eval.zarr"
    if not store.exists():
        raise ConfigError(
            f"train.val_data={val_data}: no evaluation store at {store}; ingest the val "
            f"split with --eval-store (the default) or point at <out>/<dataset>/val"
        )
    return store


class Validator:
    """Scores fixed 1:K (K >= 2) or verification (K = 1) validation trials with ``model.predict``.

    Every process scores an interleaved share of the trials; the per-trial results are gathered,
    so the number does not depend on the number of processes.
    """

    def __init__(
        self, val_data, data_cfg: dict, k: int, directions, *, seed: int, min_trials: int, batch_size: int, accelerator
    ):
        from launch.eval.inputs import EvalInputs, ItemLoader
        from launch.eval.trials import TrialOptions, generate_for_store
        from shards.evalstore import EvalStore

        self.store = EvalStore(eval_store_path(val_data))
        self.k, self.batch_size, self.accelerator = k, batch_size, accelerator
        self.directions = list(directions)
        self.name = f"val/acc_1:{k}" if k >= 2 else "val/auc"
        n_ids = len(set(self.store.identities))
        max_k = max(2, k)
        if n_ids < max_k:
            raise ConfigError(
                f"train.val_data has {n_ids} identities; 1:{max_k} validation needs at least "
                f"{max_k} (set train.val_k lower or use a larger val split)"
            )
        rank, world = accelerator.process_index, accelerator.num_processes
        collected = {d: ([], [], []) for d in self.directions}  # probes, candidates, labels
        for round_no in range(MAX_ROUNDS):
            short = [d for d in self.directions if len(collected[d][0]) < min_trials]
            if not short:
                break
            # one trial set per round serves every direction still short of min_trials
            trials = generate_for_store(
                self.store, TrialOptions(seed=seed + round_no, max_k=max_k, probes_per_identity=10**6), split="val"
            )
            for direction in short:
                if k >= 2:
                    p, c, lab, _ = trials.matching(direction, k)
                else:
                    p, c, lab, _ = trials.verification(direction)
                    c = [[x] for x in c]
                if not p:
                    raise ConfigError(
                        f"train.val_data: no valid {direction} trials (need identities with "
                        f"clips from two videos); skipped: {trials.header['skipped']}"
                    )
                probes, cands, labels = collected[direction]
                probes += list(p)
                cands += list(c)
                labels += list(np.asarray(lab).tolist())
        self.work = {
            d: (probes[rank::world], cands[rank::world], np.asarray(labels[rank::world]))
            for d, (probes, cands, labels) in collected.items()
        }
        self.items = ItemLoader(self.store, EvalInputs.from_data_config(data_cfg))

    @torch.no_grad()
    def __call__(self, model) -> dict:
        from accelerate.utils import gather_object

        from launch.eval.metrics import roc_auc, tie_aware_hits
        from launch.eval.scoring import ModelScorer

        was_training = model.training
        scorer = ModelScorer(
            model, self.items, batch_size=self.batch_size, method="head", device=self.accelerator.device, progress=False
        )
        result, pooled = {}, []
        for direction in self.directions:
            probes, cands, labels = self.work[direction]
            local, nonfinite = [], 0
            if probes:
                scores, _ = scorer.score(direction, probes, cands)
                # A diverging model must not kill the run from inside validation: non-finite scores
                # are replaced by a value below every finite one (a trial with no finite score ties
                # everywhere = chance credit) and counted in the result.
                bad = ~np.isfinite(scores)
                nonfinite = int(bad.any(axis=1).sum())
                floor = float(scores[~bad].min()) - 1.0 if (~bad).any() else 0.0
                scores = np.where(bad, floor, scores)
                if self.k >= 2:
                    local = tie_aware_hits(scores, labels).tolist()
                else:
                    local = list(zip(scores[:, 0].tolist(), labels.tolist()))
            gathered = gather_object(local) if self.accelerator.num_processes > 1 else local
            counts = gather_object([nonfinite]) if self.accelerator.num_processes > 1 else [nonfinite]
            if sum(counts):
                result[f"val/nonfinite_trials/{direction}"] = int(sum(counts))
            if self.k >= 2:
                value = float(np.mean(gathered))
            else:
                s, y = zip(*gathered)
                value = roc_auc(np.asarray(s), np.asarray(y))
            result[f"{self.name}/{direction}"] = value
            result[f"val/trials/{direction}"] = len(gathered)
            pooled.append(value)
        result[self.name] = float(np.mean(pooled))  # directions weighted equally
        result["val/tuples"] = int(sum(result[f"val/trials/{d}"] for d in self.directions))
        model.train(was_training)
        return result


def validation_directions(direction: str) -> list[str]:
    return ["v2f", "f2v"] if direction == "both" else [direction]
