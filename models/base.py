"""What baseline, AICANet and BIANet share: backbones run once per unique item, heads, losses.

Subclasses implement :meth:`MatchingModel.embed`, turning the unique items' feature maps into
tuple embeddings ``h_anchor [B, D]`` and ``h_cand [B, K, D]``, and may add loss terms via
:meth:`MatchingModel.extra_losses`.

Adversarial order (the training loop's contract, docs/MODELS.md): ``total`` holds the
generator's adversarial term computed through a *detached copy* of the discriminator's weights,
and ``disc_total`` is computed on *detached* embeddings. So ``total`` never puts gradient on the
discriminator and ``disc_total`` never reaches the generator or the backbones: both can come
from one forward, and stepping the main optimiser first and the discriminator second (or
backpropagating their sum once) is correct.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from . import losses
from .backbones import build_face_backbone, build_voice_backbone
from .batch import TupleIndex, always_check_values, check_batch, gather_rows
from .heads import FACE_MODALITY, VOICE_MODALITY, Generator, ModalityDiscriminator, build_classifier

PARAM_GROUPS = ("face_encoder", "voice_encoder", "generator", "discriminator", "classifier", "attention")


class MatchingModel(nn.Module):
    """Common skeleton; ``cfg`` is the complete, validated config from :func:`models.build_model`."""

    trained_epoch: torch.Tensor  # buffer, registered in __init__

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self.cfg = dict(cfg)
        self.num_candidates = int(cfg["num_candidates"])
        self.face_encoder = build_face_backbone(cfg["face_backbone"], cfg["face_pretrained"])
        self.voice_encoder = build_voice_backbone(cfg["voice_backbone"])
        c_face, c_voice = self.face_encoder.out_channels, self.voice_encoder.out_channels
        if c_face != c_voice:
            raise ValueError(
                f"face_backbone gives {c_face} channels but voice_backbone {c_voice}; the shared "
                "generator needs equal widths (set the last entry of 'widths' to match)"
            )
        self.channels = c_face
        self.generator = Generator(
            c_face, cfg["generator_hidden"], cfg["embed_dim"], cfg["dropout"], cfg["spectral_norm"]
        )
        self.discriminator = ModalityDiscriminator(cfg["embed_dim"], cfg["dropout"], cfg["spectral_norm"])
        if not cfg["adversarial"]:
            self.discriminator.requires_grad_(False)  # unused without the adversarial game
        self.classifier = build_classifier(
            self.num_candidates, cfg["embed_dim"], cfg["dropout"], cfg["spectral_norm"], cfg["classifier"]
        )
        self.attention = nn.ModuleDict()
        # Last training progress seen by loss(); BIANet's test-time Eq. 22 weight reads it, and as a
        # buffer it is saved and restored with the checkpoint.
        self.register_buffer("trained_epoch", torch.zeros((), dtype=torch.float64))
        self._batch_values_checked = False  # index/label ranges: first batch only (host syncs)

    # ---- encoding -------------------------------------------------------------------------------
    def encode(self, batch: dict[str, Any]) -> tuple[TupleIndex, torch.Tensor, torch.Tensor]:
        """Run each backbone once on the batch's unique items: (index, anchor-modality maps, candidate-modality maps)."""
        idx = check_batch(batch, check_values=not self._batch_values_checked or always_check_values())
        self._batch_values_checked = True
        face_maps = self.face_encoder(batch["faces"])
        voice_maps = self.voice_encoder(batch["voices"])
        if idx.anchor_is_voice:
            return idx, voice_maps, face_maps
        return idx, face_maps, voice_maps

    def embed(self, idx: TupleIndex, anchor_maps: torch.Tensor, cand_maps: torch.Tensor) -> dict[str, Any]:
        raise NotImplementedError

    def embed_items(
        self, idx: TupleIndex, anchor_maps: torch.Tensor, cand_maps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h_anchor [B, D], h_cand [B, K, D])`` for maps that do not depend on the pairing.

        The generator runs once per unique item and the tuples gather the embeddings, instead of
        embedding each item once per tuple it appears in.
        """
        return (
            gather_rows(self.generator(anchor_maps), idx.anchor_index),
            gather_rows(self.generator(cand_maps), idx.candidate_index),
        )

    def score(self, out: dict[str, Any]) -> torch.Tensor:
        """The head's scores: ``[B, K]`` logits (argmax = the match), or ``[B]`` for K = 1 (> 0 = match)."""
        logits: torch.Tensor = self.classifier(out["h_anchor"], out["h_cand"])
        return logits

    def similarity(self, out: dict[str, Any]) -> torch.Tensor:
        """Embedding scores ``[B, K]``: cosine of the anchor's and each candidate's shared embedding.

        The head-free scorer (any K, no trained head needed; not the papers' scorer). BIANet
        overrides it to keep its counterfactual difference.
        """
        h_a, h_c = out["h_anchor"], out["h_cand"]
        if h_a.dim() == 2:
            h_a = h_a[:, None, :]
        return F.cosine_similarity(h_a, h_c, dim=-1)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        idx, anchor_maps, cand_maps = self.encode(batch)
        out = self.embed(idx, anchor_maps, cand_maps)
        out["logits"] = self.score(out)
        out["anchor_modality"] = VOICE_MODALITY if idx.anchor_is_voice else FACE_MODALITY
        out["index"] = idx  # loss() reuses it: check_batch's range checks sync with the GPU
        return out

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> torch.Tensor:
        """Scores in eval mode ([B, K], or [B] for K = 1); the model's train/eval mode is restored."""
        was_training = self.training
        self.eval()
        try:
            logits: torch.Tensor = self.forward(batch)["logits"]
            return logits
        finally:
            self.train(was_training)

    # ---- losses ---------------------------------------------------------------------------------
    def _disc_logits(self, h: torch.Tensor, detach_weights: bool) -> torch.Tensor:
        logits: torch.Tensor
        if not detach_weights:
            logits = self.discriminator(h)
            return logits
        params = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        logits = functional_call(self.discriminator, params, (h,))
        return logits

    def adversarial_terms(self, out: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Generator term (through detached D weights) and discriminator term (on detached embeddings), Eq. 12."""
        h_a, h_c, mod = out["h_anchor"], out["h_cand"], out["anchor_modality"]
        adv = losses.modality_loss(self._disc_logits(h_a, True), self._disc_logits(h_c, True), mod, flip=True)
        disc = losses.modality_loss(self.discriminator(h_a.detach()), self.discriminator(h_c.detach()), mod, flip=False)
        return {"adv": adv, "disc": disc}

    def classification_loss(self, out: dict[str, Any], label: torch.Tensor, epoch: float) -> dict[str, torch.Tensor]:
        return {"cls": losses.matching_loss(out["logits"], label)}

    def extra_losses(self, out: dict[str, Any], idx: TupleIndex, epoch: float) -> dict[str, tuple[float, torch.Tensor]]:
        """Weighted model-specific terms: returns {name: (weight, value)}."""
        return {}

    def loss(self, out: dict[str, Any], batch: dict[str, Any], epoch: float) -> dict[str, torch.Tensor]:
        """Named loss terms; ``total`` = adv + alpha metric + beta cls + model terms (Eq. 16), ``disc_total`` = Eq. 12."""
        cfg = self.cfg
        idx = out.get("index")
        if idx is None or idx.label is None:  # not a forward() output, or forward() saw no label
            idx = check_batch(batch)
        if idx.label is None:
            raise ValueError("loss() needs batch['label']")
        if self.training:
            self.trained_epoch.fill_(float(epoch))
        terms = dict(self.classification_loss(out, idx.label, epoch))
        total = cfg["beta"] * terms["cls"]
        terms["metric"] = losses.metric_loss(
            cfg["metric_loss"],
            out["h_anchor"],
            out["h_cand"],
            idx.label,
            cfg["theta"],
            cfg["mu1"],
            cfg["mu2"],
            cfg["rdsm_distance"],
        )
        total = total + cfg["alpha"] * terms["metric"]
        if cfg["adversarial"]:
            adv = self.adversarial_terms(out)
            terms["adv"] = adv["adv"]
            terms["disc_total"] = adv["disc"]
            total = total + cfg["adv_weight"] * adv["adv"]
        else:
            terms["disc_total"] = total.new_zeros((), requires_grad=False)
        for name, (weight, value) in self.extra_losses(out, idx, epoch).items():
            terms[name] = value
            total = total + weight * value
        terms["total"] = total
        return terms

    # ---- optimisation helpers -------------------------------------------------------------------
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Every trainable parameter exactly once, grouped as the papers' per-module learning rates.

        Frozen parameters (an untrainable relevance net, an unused discriminator) are left out.
        """
        return {name: [p for p in getattr(self, name).parameters() if p.requires_grad] for name in PARAM_GROUPS}

    def param_counts(self) -> dict[str, int]:
        """Trainable parameters per group of `param_groups` (what the CLI and benchmarks report)."""
        return {name: sum(p.numel() for p in params) for name, params in self.param_groups().items()}


def one_hot_match(label: torch.Tensor, k: int) -> torch.Tensor:
    """[B, K] target: 1 for the matching candidate (K = 1: the verification label itself)."""
    if k == 1:
        return label[:, None].float()
    return F.one_hot(label, k).float()


def pair_indices(idx: TupleIndex) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened (anchor row, candidate row) of every (tuple, candidate) pair, ``[B*K]`` each."""
    b, k = idx.candidate_index.shape
    return idx.anchor_index[:, None].expand(b, k).reshape(-1), idx.candidate_index.reshape(-1)
