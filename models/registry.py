"""``build_model(cfg)``: the one entry point, with every default in one place.

``DEFAULTS[name]`` is the complete config of each model (paper values); ``build_model`` fills
missing keys from it, rejects unknown keys and bad values with an error naming the key and what
is allowed, and stores the complete config on ``model.cfg`` so a printout shows every setting.
``TINY`` holds the overrides for the CPU demo (64 px faces, 40-mel 2-s voices, small widths).
"""

from __future__ import annotations

from typing import Any

from .aicanet import AICANet
from .attention import THRESHOLD_MODES
from .base import MatchingModel
from .baseline import BaselineModel
from .bianet import BIANet
from .losses import CF_POSITIVITY, METRIC_LOSSES, RDSM_DISTANCES

COMMON: dict[str, Any] = {
    "name": "baseline",
    "size": "paper",  # paper | tiny: the CPU sizes of TINY under every key not set explicitly
    "num_candidates": 2,  # K; 1 = verification
    "total_epochs": 50,  # N of Eq. 2 / Eq. 22
    "face_backbone": "resnet18",  # preset name or {"preset": ..., overrides}
    "voice_backbone": "seresnet34",
    "face_pretrained": None,  # path of a torchvision ResNet-18 ImageNet state dict, or None
    "embed_dim": 128,
    "generator_hidden": 256,
    "dropout": 0.1,
    "spectral_norm": True,
    "classifier": "concat",  # concat (Eq. 13, fixed K) | shared (any K, extension)
    "adversarial": True,  # generator/discriminator game of Eq. 12
    "adv_weight": 1.0,  # weight of the adversarial term in Eq. 16
    "metric_loss": "structure",  # rdsm | structure | lifted | triplet | none
    "alpha": 2.0,  # Eq. 16 metric weight
    "beta": 2.0,  # Eq. 16 classification weight
    "theta": 1.2,  # Eq. 15 theta, also the margin of the alternative metrics
    "mu1": 10.0,  # Eq. 15
    "mu2": 4.0,  # Eq. 15 (paper; the authors' code uses 10)
    "rdsm_distance": "unit",  # RDSM on L2-normalised embeddings | raw (printed; never pushes, docs/MODELS.md)
}

AICANET: dict[str, Any] = {
    **COMMON,
    "name": "aicanet",
    "metric_loss": "rdsm",
    "gamma": 1.0,  # Eq. 16 relevance-loss weight
    "tau": 5.0,  # Eq. 2 temperature
    "delta": 10.0,  # Eqs. 6, 11 temperature
    "attn_channels": 128,  # C' of the 1x1 projections
    "cbp_dim": 4000,  # Eq. 1 compact bilinear pooling size
    "cbp_seed": 1,
    "relevance_hidden": 128,
    "aia": True,  # adaptive interaction attention (Table V)
    "first_order": True,  # relevance-guided cross-modal step, Eqs. 3-6 (Table VII 'RCI')
    "relevance_guidance": True,  # sign(R) of Eq. 4 (Table VI 'RCI')
    "self_support": True,  # second-order step, Eq. 7
    "rel_loss": True,  # Eq. 2 (Table VI 'L_Rel')
    "def_fusion": True,  # Eq. 8 dynamic estimation fusion vs plain skip (Tables VI, VII)
    "aca": True,  # adaptive correction (Eqs. 9-11) on the inter- and intra-modal correlations;
    # false = eps 0 (identity), both branches of Eq. 8 kept (Table V "without ACA")
    "aca_epsilon": "learned",  # 'learned' (Eq. 9) or a fixed value (Table VIII)
    "aca_threshold": "gate",  # gate (suppresses |E| < eps) | soft (paper's words) | hard (authors' code)
    "threshold_width": 0.02,  # width of the sigmoid threshold gate (cosine units)
    "aca_method": "adaptive",  # Eq. 9 | Table IX alternatives: shrinkage (features) | pca | lowpass
    "aca_pca_ratio": 0.25,  # Table IX principal components: kept fraction of the C' components
    "aca_lowpass_cutoff": 0.25,  # Table IX frequency filtering: kept fraction of the frequencies
    "se_reduction": 4,
}

BIANET: dict[str, Any] = {
    **COMMON,
    "name": "bianet",
    "pia": True,  # positive intervention attention (Table 5)
    "nia": True,  # negative intervention attention + counterfactual inference
    "epsilon": "learned",  # 'learned' (self-learning) or a fixed value (Table 6)
    "pia_threshold": "gate",  # Eq. 10: gate (suppresses A < eps) | clamp (printed; raises the weak entries)
    "nia_form": "normalized",  # Eq. 15: normalized (tau_neg A~/eps, gated to A < eps) | literal (softmax(A~ + d))
    "threshold_width": 0.02,  # width of the sigmoid threshold gate (cosine units)
    "tau_neg": 10.0,  # temperature of the normalized NIA softmax (A~/eps in [0, 1]); as tau1
    "tau1": 10.0,  # Eq. 12 (text: 10; Fig. 7 reports 5 as best)
    "tau2": 20.0,  # Eq. 19, not given in the paper: largest value of its Fig. 7 grid
    "dropkey_p": 0.1,  # Eq. 17 p, not given: the authors' vestigial DropKey ratio
    "cf_schedule": "cosine",  # cosine (Eq. 22 curriculum) | constant (Table 7 'w/o')
    "cf_constant_weight": 1.0,  # w for cf_schedule=constant (the plain TIE of Eq. 8)
    "cf_positivity": "logit",  # Eq. 22 form: logit (CE(z_cp - w z_cn)) | softplus | clamp (probability form)
    "cf_softplus_beta": 10.0,
    "cf_clamp_floor": 1e-4,
    "attn_channels": 128,
    "se_reduction": 4,
}

DEFAULTS: dict[str, dict[str, Any]] = {"baseline": COMMON, "aicanet": AICANET, "bianet": BIANET}
MODEL_CLASSES: dict[str, type[MatchingModel]] = {"baseline": BaselineModel, "aicanet": AICANet, "bianet": BIANet}

TINY: dict[str, Any] = {
    "face_backbone": "tiny",
    "voice_backbone": "tiny",
    "attn_channels": 32,
    "cbp_dim": 512,
    "generator_hidden": 128,
}

_CHOICES = {
    "size": ("paper", "tiny"),
    "classifier": ("concat", "shared"),
    "metric_loss": METRIC_LOSSES,
    "aca_threshold": THRESHOLD_MODES,
    "aca_method": ("adaptive", "shrinkage", "pca", "lowpass"),
    "cf_schedule": ("cosine", "constant"),
    "cf_positivity": CF_POSITIVITY,
    "rdsm_distance": RDSM_DISTANCES,
    "pia_threshold": ("gate", "clamp"),
    "nia_form": ("normalized", "literal"),
}
_POSITIVE_INT = (
    "num_candidates",
    "embed_dim",
    "generator_hidden",
    "attn_channels",
    "cbp_dim",
    "relevance_hidden",
    "se_reduction",
)
_POSITIVE_FLOAT = (
    "total_epochs",
    "mu1",
    "mu2",
    "tau",
    "delta",
    "tau1",
    "tau2",
    "tau_neg",
    "threshold_width",
    "cf_softplus_beta",
    "cf_clamp_floor",
)
_NONNEG_FLOAT = ("adv_weight", "alpha", "beta", "gamma", "theta", "cf_constant_weight")
_BOOL = (
    "spectral_norm",
    "adversarial",
    "aia",
    "first_order",
    "relevance_guidance",
    "self_support",
    "rel_loss",
    "def_fusion",
    "aca",
    "pia",
    "nia",
)


def resolve_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Complete and validate a model config (pure: returns a new dict)."""
    if not isinstance(cfg, dict):
        raise ValueError(f"model config must be a dict, got {type(cfg).__name__}")
    name = cfg.get("name")
    if name not in DEFAULTS:
        raise ValueError(f"model.name={name!r} is unknown; allowed: {sorted(DEFAULTS)}")
    defaults = DEFAULTS[name]
    for key in cfg:
        if key not in defaults:
            raise ValueError(f"model.{key} is not a setting of model {name!r}; allowed keys: {sorted(defaults)}")
    size = cfg.get("size", "paper")
    if size not in _CHOICES["size"]:
        raise ValueError(f"model.size={size!r}; allowed: {list(_CHOICES['size'])}")
    full = {**defaults, **(tiny_overrides(name) if size == "tiny" else {}), **cfg}
    for key, allowed in _CHOICES.items():
        if key in full and full[key] not in allowed:
            raise ValueError(f"model.{key}={full[key]!r}; allowed: {list(allowed)}")
    for key in _POSITIVE_INT:
        if key in full and (isinstance(full[key], bool) or not isinstance(full[key], int) or full[key] < 1):
            raise ValueError(f"model.{key}={full[key]!r} must be a positive integer")
    for key in _POSITIVE_FLOAT:
        if key in full and (isinstance(full[key], bool) or not isinstance(full[key], (int, float)) or full[key] <= 0):
            raise ValueError(f"model.{key}={full[key]!r} must be a positive number")
    for key in _NONNEG_FLOAT:
        if key in full and (isinstance(full[key], bool) or not isinstance(full[key], (int, float)) or full[key] < 0):
            raise ValueError(f"model.{key}={full[key]!r} must be a number >= 0")
    for key in _BOOL:
        if key in full and not isinstance(full[key], bool):
            raise ValueError(f"model.{key}={full[key]!r} must be true or false")
    if "dropout" in full and not 0 <= full["dropout"] < 1:
        raise ValueError(f"model.dropout={full['dropout']!r} must be in [0, 1)")
    for key in ("aca_pca_ratio", "aca_lowpass_cutoff"):
        if key in full and not (isinstance(full[key], (int, float)) and 0 < full[key] <= 1):
            raise ValueError(f"model.{key}={full[key]!r} must be in (0, 1]")
    if "dropkey_p" in full and not 0 <= full["dropkey_p"] < 1:
        raise ValueError(f"model.dropkey_p={full['dropkey_p']!r} must be in [0, 1)")
    for key in ("aca_epsilon", "epsilon"):
        if key in full:
            value = full[key]
            if value != "learned" and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1
            ):
                raise ValueError(f"model.{key}={value!r}; allowed: 'learned' or a number in [0, 1)")
    if full["face_pretrained"] is not None and not isinstance(full["face_pretrained"], str):
        raise ValueError("model.face_pretrained must be a file path or null")
    if name == "aicanet" and full["aia"] and not (full["first_order"] or full["self_support"]):
        raise ValueError("model.aia=true needs first_order or self_support (otherwise set aia=false)")
    if name == "aicanet" and full["rel_loss"] and not (full["aia"] and full["first_order"]):
        raise ValueError(
            "model.rel_loss=true needs aia=true and first_order=true (Eq. 2 supervises the "
            "relevance net of the relevance-guided first-order step); set rel_loss=false"
        )
    if full["classifier"] == "shared" and full["num_candidates"] == 1:
        raise ValueError("model.classifier='shared' needs num_candidates >= 2 (K = 1 uses the verification head)")
    return full


def tiny_overrides(name: str) -> dict[str, Any]:
    """The ``TINY`` overrides that apply to model ``name`` (keys it does not have are left out)."""
    if name not in DEFAULTS:
        raise ValueError(f"model.name={name!r} is unknown; allowed: {sorted(DEFAULTS)}")
    return {k: v for k, v in TINY.items() if k in DEFAULTS[name]}


def build_model(cfg: dict[str, Any]) -> MatchingModel:
    """Build baseline | aicanet | bianet from a (partial) config; see ``DEFAULTS`` for every key."""
    full = resolve_config(cfg)
    return MODEL_CLASSES[full["name"]](full)
