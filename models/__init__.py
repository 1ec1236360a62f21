"""Models for cross-modal voice-face matching: baseline, AICANet (TIFS 2025), BIANet (PR 2025).

Tensors in, tensors out (ARCHITECTURE.md §5): ``build_model(cfg)`` gives a module whose
``forward(batch)`` takes the indexed tuple batch, ``loss(out, batch, epoch)`` returns named terms
with ``total`` and ``disc_total``, ``param_groups()`` the per-module parameter lists and
``predict(batch)`` eval-mode scores. docs/MODELS.md maps every paper equation to its code.
"""

from .ablations import ABLATIONS, ablation_config
from .batch import check_batch, from_dense
from .registry import DEFAULTS, TINY, build_model, resolve_config, tiny_overrides

__all__ = [
    "ABLATIONS",
    "DEFAULTS",
    "TINY",
    "ablation_config",
    "build_model",
    "check_batch",
    "from_dense",
    "resolve_config",
    "tiny_overrides",
]
