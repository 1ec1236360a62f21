"""Every ablation row of AICANet Tables V-VIII and X and BIANet Tables 5-7 as a config.

``ABLATIONS[row]`` is a dict of model-config overrides (including ``name``); ``ablation_config``
merges it with extra settings (e.g. ``TINY`` sizes, ``num_candidates``) into a config for
:func:`models.build_model`. Rows that the papers repeat across tables (the full model, the
baseline) appear under each table's name so a table can be rebuilt by its own prefix.

Readings of the tables (docs/MODELS.md has the reasoning): the baseline and every AICANet row
without "L_RDSM" use the structure metric L_SM (Table X's L_SM row equals Table V (d)); Table VI
and VII's self-support rows sit on AIA without ACA (their numbers equal Table V (c)); "w/o CLS"
in BIANet Table 7 is the reverse prediction at a constant weight 1 from the first epoch.
"""

from __future__ import annotations

from typing import Any

from .registry import DEFAULTS

_BASELINE = {"name": "baseline", "metric_loss": "structure"}
_AIA_ONLY = {"name": "aicanet", "metric_loss": "structure", "aca_inter": False, "aca_intra": False}
_FULL_AICANET = {"name": "aicanet"}
_FULL_BIANET = {"name": "bianet"}

ABLATIONS: dict[str, dict[str, Any]] = {
    # AICANet Table V: components AIA / ACA / L_RDSM.
    "aicanet_t5_a_baseline": dict(_BASELINE),
    "aicanet_t5_b_rdsm": {"name": "baseline", "metric_loss": "rdsm"},
    "aicanet_t5_c_aia": dict(_AIA_ONLY),
    "aicanet_t5_d_aia_aca": {"name": "aicanet", "metric_loss": "structure"},
    "aicanet_t5_e_full": dict(_FULL_AICANET),
    # AICANet Table VI: parts of AIA (RCI, L_Rel, DEF), without ACA.
    "aicanet_t6_a_baseline": dict(_BASELINE),
    "aicanet_t6_b_rci": {**_AIA_ONLY, "rel_loss": False, "def_fusion": False},
    "aicanet_t6_c_rci_rel": {**_AIA_ONLY, "def_fusion": False},
    "aicanet_t6_d_rci_rel_def": dict(_AIA_ONLY),
    # AICANet Table VII: self-support without / with RCI; DEF without / with (full model).
    "aicanet_t7_selfsupport_without_rci": {**_AIA_ONLY, "first_order": False, "rel_loss": False},
    "aicanet_t7_selfsupport_with_rci": dict(_AIA_ONLY),
    "aicanet_t7_def_without": {"name": "aicanet", "def_fusion": False},
    "aicanet_t7_def_with": dict(_FULL_AICANET),
    # AICANet Table VIII: fixed vs adaptive threshold eps.
    "aicanet_t8_eps_0.01": {"name": "aicanet", "aca_epsilon": 0.01},
    "aicanet_t8_eps_0.05": {"name": "aicanet", "aca_epsilon": 0.05},
    "aicanet_t8_eps_0.1": {"name": "aicanet", "aca_epsilon": 0.1},
    "aicanet_t8_eps_0.2": {"name": "aicanet", "aca_epsilon": 0.2},
    "aicanet_t8_eps_adaptive": dict(_FULL_AICANET),
    # AICANet Table X: metric losses.
    "aicanet_t10_triplet": {"name": "aicanet", "metric_loss": "triplet"},
    "aicanet_t10_lifted": {"name": "aicanet", "metric_loss": "lifted"},
    "aicanet_t10_structure": {"name": "aicanet", "metric_loss": "structure"},
    "aicanet_t10_rdsm": dict(_FULL_AICANET),
    # BIANet Table 5: PIA / NIA.
    "bianet_t5_a_baseline": dict(_BASELINE),
    "bianet_t5_b_pia": {"name": "bianet", "nia": False},
    "bianet_t5_c_nia": {"name": "bianet", "pia": False},
    "bianet_t5_d_full": dict(_FULL_BIANET),
    # BIANet Table 6: disentanglement threshold eps.
    "bianet_t6_eps_0.01": {"name": "bianet", "epsilon": 0.01},
    "bianet_t6_eps_0.1": {"name": "bianet", "epsilon": 0.1},
    "bianet_t6_eps_0.2": {"name": "bianet", "epsilon": 0.2},
    "bianet_t6_eps_learned": dict(_FULL_BIANET),
    # BIANet Table 7: curriculum learning strategy.
    "bianet_t7_without_cls": {"name": "bianet", "cf_schedule": "constant", "cf_constant_weight": 1.0},
    "bianet_t7_with_cls": dict(_FULL_BIANET),
}


def ablation_config(row: str, **settings: Any) -> dict[str, Any]:
    """Config for ablation ``row`` plus ``settings`` (shared settings such as sizes, K, epochs).

    Settings the row's model does not have (e.g. ``cbp_dim`` for the baseline) are dropped, so one
    set of shared sizes can be applied to every row; the row's own overrides always win.
    """
    if row not in ABLATIONS:
        raise ValueError(f"ablation {row!r} unknown; allowed: {sorted(ABLATIONS)}")
    overrides = ABLATIONS[row]
    allowed = DEFAULTS[overrides["name"]]
    merged = {k: v for k, v in settings.items() if k in allowed and k != "name"}
    merged.update(overrides)
    return merged
