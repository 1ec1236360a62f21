"""Tiny stand-ins for the loader and the model, so the trainer's own logic (resume, DDP, schedule,
logging) is tested in seconds and independently of the real data path.

The fake loader follows the TupleLoader contract (ARCHITECTURE.md §3, docs/LOADER.md): indexed
tuple batches, ``steps_per_epoch``, ``set_epoch``, ``state_dict``/``load_state_dict`` restoring
the cursor in O(1), per-rank disjoint streams. Its data is learnable: each identity has a latent
vector seen (noisily, through different fixed projections) by its faces and its voices.

The fake model follows the model contract (ARCHITECTURE.md §5) including the detach rules for the
adversarial pair and dropout (so the resume test exercises the RNG restore).

Run as a script, it trains with these fakes under ``accelerate launch`` (2-process test).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

LATENT, FACE_DIM, VOICE_DIM, FACE_HW, MELS, FRAMES = 6, 8, 8, 4, 4, 6


class FakeLoader:
    def __init__(self, data_cfg: dict, rank: int = 0, world_size: int = 1, device="cpu"):
        self.cfg = data_cfg
        self.rank, self.world = rank, world_size
        self.device = torch.device(device)
        self.k = int(data_cfg.get("k", 2))
        self.batch_size = int(data_cfg.get("batch_size", 8))
        self.identities = int(data_cfg.get("identities", 20))
        self.seed = int(data_cfg.get("seed", 0))
        self.direction = data_cfg.get("direction", "v2f")
        self.noise = float(data_cfg.get("noise", 0.3))
        self.steps_per_epoch = int(data_cfg.get("batches_per_epoch", 6))
        # item shapes: the fake model's defaults, or the real tiny models' (face_hw 48, mels 40, frames 81)
        self.face_hw = int(data_cfg.get("face_hw", FACE_HW))
        self.mels, self.frames = int(data_cfg.get("mels", MELS)), int(data_cfg.get("frames", FRAMES))
        self.epoch, self.cursor = 0, 0
        self.batches_made = 0  # for tests: proves resume does not replay
        g = torch.Generator().manual_seed(int(data_cfg.get("world_seed", 99)))  # the "dataset"
        self.latent = torch.randn(self.identities, LATENT, generator=g)
        self.face_proj = torch.randn(LATENT, 3 * self.face_hw * self.face_hw, generator=g)
        self.voice_proj = torch.randn(LATENT, self.mels * self.frames, generator=g)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.cursor = int(epoch), 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])

    def __iter__(self):
        while self.cursor < self.steps_per_epoch:
            batch = self._make(self.epoch, self.cursor)
            self.cursor += 1
            yield batch

    def _make(self, epoch: int, index: int) -> dict:
        self.batches_made += 1
        g = torch.Generator().manual_seed(hash((self.seed, epoch, self.rank, index)) % 2**62)
        b, k = self.batch_size, self.k
        ids = torch.stack([torch.randperm(self.identities, generator=g)[: max(k, 2)] for _ in range(b)])
        label = torch.randint(0, k, (b,), generator=g) if k >= 2 else torch.randint(0, 2, (b,), generator=g)
        anchor_id = ids[:, 0]
        if k >= 2:
            rows = []
            for i in range(b):
                negatives = ids[i, 1:k].tolist()
                rows.append(negatives[: int(label[i])] + [int(anchor_id[i])] + negatives[int(label[i]) :])
            cand_id = torch.tensor(rows)
        else:
            cand_id = torch.where(label.bool(), anchor_id, ids[:, 1])[:, None]
        direction = self.direction if self.direction != "both" else ("v2f", "f2v")[index % 2]
        voice_ids = anchor_id if direction == "v2f" else cand_id.reshape(-1)
        face_ids = cand_id.reshape(-1) if direction == "v2f" else anchor_id
        faces = self.latent[face_ids] @ self.face_proj
        voices = self.latent[voice_ids] @ self.voice_proj
        faces = (faces + self.noise * torch.randn(faces.shape, generator=g)).reshape(-1, 3, self.face_hw, self.face_hw)
        voices = (voices + self.noise * torch.randn(voices.shape, generator=g)).reshape(-1, 1, self.mels, self.frames)
        anchor_index = torch.arange(b)
        candidate_index = torch.arange(b * k).reshape(b, k)
        return {
            "direction": direction,
            "faces": faces.to(self.device),
            "voices": voices.to(self.device),
            "anchor_index": anchor_index.to(self.device),
            "candidate_index": candidate_index.to(self.device),
            "label": label.to(self.device),
            "anchor_identity": [f"id{i}" for i in anchor_id.tolist()],
        }

    def skip_counts(self) -> dict:
        return {"bad_jpeg": 0}


class FakeModel(nn.Module):
    """Linear encoders → shared tanh generator → discriminator / classifier, with dropout."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = dict(cfg)
        self.num_candidates = int(cfg.get("num_candidates", 2))
        self.face_encoder = nn.Linear(3 * FACE_HW * FACE_HW, 16)
        self.voice_encoder = nn.Linear(MELS * FRAMES, 16)
        self.attention = nn.Linear(16, 16)
        self.generator = nn.Sequential(nn.Dropout(0.1), nn.Linear(16, 8), nn.Tanh())
        self.discriminator = nn.Linear(8, 2)
        self.classifier = nn.Linear(8, 1)
        self.register_buffer("trained_epoch", torch.zeros((), dtype=torch.float64))
        self.epochs_seen: list[float] = []

    def _embed(self, batch):
        f = self.generator(self.attention(self.face_encoder(batch["faces"].flatten(1))))
        v = self.generator(self.attention(self.voice_encoder(batch["voices"].flatten(1))))
        if batch["direction"] == "v2f":
            return v[batch["anchor_index"]], f[batch["candidate_index"]]
        return f[batch["anchor_index"]], v[batch["candidate_index"]]

    def forward(self, batch):
        h_a, h_c = self._embed(batch)
        logits = self.classifier(torch.exp(-(h_a[:, None] - h_c).abs())).squeeze(-1)
        if self.num_candidates == 1:
            logits = logits[:, 0]
        return {"logits": logits, "h_anchor": h_a, "h_cand": h_c}

    @torch.no_grad()
    def predict(self, batch):
        was = self.training
        self.eval()
        try:
            return self.forward(batch)["logits"]
        finally:
            self.train(was)

    def loss(self, out, batch, epoch: float):
        if self.training:
            self.trained_epoch.fill_(float(epoch))
            self.epochs_seen.append(float(epoch))
        label = batch["label"]
        if self.num_candidates == 1:
            cls = F.binary_cross_entropy_with_logits(out["logits"], label.float())
        else:
            cls = F.cross_entropy(out["logits"], label)
        h = torch.cat([out["h_anchor"], out["h_cand"].flatten(0, 1)])
        mod = torch.cat([torch.zeros(len(out["h_anchor"])), torch.ones(out["h_cand"].shape[:2].numel())]).long()
        frozen = {n: p.detach() for n, p in self.discriminator.named_parameters()}
        adv = F.cross_entropy(functional_call(self.discriminator, frozen, (h,)), 1 - mod)
        disc = F.cross_entropy(self.discriminator(h.detach()), mod)
        anneal = 0.5 * (1 + torch.cos(torch.tensor(torch.pi * epoch / float(self.cfg.get("total_epochs", 1)))))
        total = cls + 0.1 * adv + 0.01 * anneal * h.pow(2).mean()
        return {"total": total, "disc_total": disc, "cls": cls, "adv": adv}

    def param_groups(self):
        from launch.config import MODULE_GROUPS

        return {name: list(getattr(self, name).parameters()) for name in MODULE_GROUPS}


REAL_SHAPES = {"face_hw": 48, "mels": 40, "frames": 81}  # what the tiny real backbones take in tests


def fake_or_real_model(cfg: dict) -> nn.Module:
    """``model.name: fake`` -> FakeModel; baseline / aicanet / bianet -> the real model with the
    ``TINY`` backbones (pair it with a FakeLoader given ``REAL_SHAPES``)."""
    if cfg.get("name") == "fake":
        return FakeModel(cfg)
    import models

    return models.build_model({**models.tiny_overrides(cfg["name"]), **cfg})


class FakeValidator:
    """Validation over fixed FakeLoader tuples (the real one scores an eval.zarr)."""

    def __init__(self, cfg: dict, k: int, accelerator):
        tcfg = cfg["train"]
        self.accelerator, self.k = accelerator, k
        self.name = f"val/acc_1:{k}"
        self.loader = FakeLoader(
            {**cfg["data"], "seed": tcfg["val_seed"], "k": k},
            accelerator.process_index,
            accelerator.num_processes,
            accelerator.device,
        )
        per_batch = self.loader.batch_size * accelerator.num_processes
        self.loader.steps_per_epoch = max(1, -(-tcfg["val_min_trials"] // per_batch))

    def __call__(self, model) -> dict:
        from accelerate.utils import gather_object

        from launch.eval.metrics import tie_aware_hits

        self.loader.set_epoch(0)
        hits = []
        for batch in self.loader:
            hits += tie_aware_hits(model.predict(batch).cpu().numpy(), batch["label"].cpu().numpy()).tolist()
        if self.accelerator.num_processes > 1:
            hits = gather_object(hits)
        return {self.name: float(sum(hits) / len(hits)), "val/tuples": len(hits)}


def fake_config(tmp_dir, **train) -> dict:
    """A validated config for the fakes (``train`` entries override the train section)."""
    from launch.config import MODULE_GROUPS, validate

    cfg = {
        "data": {"k": 2, "batch_size": 8, "batches_per_epoch": 6, "identities": 20, "direction": "v2f"},
        "model": {"name": "fake"},
        "optim": {"lr": {g: 1e-2 for g in MODULE_GROUPS}, "milestones": [2, 3]},
        "train": {
            "epochs": 3,
            "output_dir": str(Path(tmp_dir) / "run"),
            "log_every": 1,
            "progress": False,
            "log_with": [],
            "cpu": True,
            "val_data": "fake-val",
            "val_min_trials": 32,
            **train,
        },
    }
    return validate(cfg)


def run_fake(cfg: dict, **kwargs):
    from launch.train import train

    kwargs.setdefault("model_builder", fake_or_real_model)
    return train(cfg, loader_builder=FakeLoader, validator_builder=FakeValidator, **kwargs)


if __name__ == "__main__":  # accelerate launch tests/train_fakes.py --config X [overrides]
    from launch.config import load_config
    from launch.train import build_parser

    args = build_parser().parse_args()
    summary = run_fake(load_config(args.config, args.overrides))
    import json

    from accelerate.state import PartialState

    if PartialState().is_main_process:
        print("SUMMARY " + json.dumps(summary))
