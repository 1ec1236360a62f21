"""Every ablation row of AICANet Tables V-X and BIANet Tables 1, 5-7 as a config, and every table
row of both papers with what reproduces it (``PAPER_ROWS``, printed by ``python -m models --rows``).

``ABLATIONS[row]`` is a dict of model-config overrides (including ``name``); ``ablation_config``
merges it with extra settings (e.g. ``TINY`` sizes, ``num_candidates``) into a config for
:func:`models.build_model`. Rows that the papers repeat across tables (the full model, the
baseline) appear under each table's name so a table can be rebuilt by its own prefix.

Readings of the tables (docs/MODELS.md has the reasoning): the baseline and every AICANet row
without "L_RDSM" use the structure metric L_SM (Table X's L_SM row equals Table V (d)); Table VI
and VII's self-support rows sit on AIA without ACA (their numbers equal Table V (c)); "w/o CLS"
in BIANet Table 7 is the reverse prediction at a constant weight 1 from the first epoch. "Without
ACA" keeps both branches of Eq. 8 and sets the threshold to 0 (identity), so a row changes one
thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .registry import DEFAULTS

_BASELINE = {"name": "baseline", "metric_loss": "structure"}
_AIA_ONLY = {"name": "aicanet", "metric_loss": "structure", "aca": False}  # "without ACA": eps = 0
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
    # AICANet Table IX: de-interference methods in ACA's place (disentanglement [27]: not reproduced).
    "aicanet_t9_shrinkage": {"name": "aicanet", "aca_method": "shrinkage"},
    "aicanet_t9_principal_component": {"name": "aicanet", "aca_method": "pca"},
    "aicanet_t9_frequency_filtering": {"name": "aicanet", "aca_method": "lowpass"},
    "aicanet_t9_adaptive_correction": dict(_FULL_AICANET),
    # AICANet Table X: metric losses.
    "aicanet_t10_triplet": {"name": "aicanet", "metric_loss": "triplet"},
    "aicanet_t10_lifted": {"name": "aicanet", "metric_loss": "lifted"},
    "aicanet_t10_structure": {"name": "aicanet", "metric_loss": "structure"},
    "aicanet_t10_rdsm": dict(_FULL_AICANET),
    # BIANet Table 1: the backbone (CNN = the default ResNets).
    "bianet_t1_transformer": {"name": "bianet", "face_backbone": "vit", "voice_backbone": "vit"},
    "bianet_t1_cnn": dict(_FULL_BIANET),
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


# A row that names a backbone keeps its architecture family at the size the shared settings ask
# for: with the tiny CPU sizes (face/voice backbone "tiny") the Transformer row uses "vit_tiny".
_SIZED_BACKBONES = {("vit", "tiny"): "vit_tiny"}


def ablation_config(row: str, **settings: Any) -> dict[str, Any]:
    """Config for ablation ``row`` plus ``settings`` (shared settings such as sizes, K, epochs).

    Settings the row's model does not have (e.g. ``cbp_dim`` for the baseline) are dropped, so one
    set of shared sizes can be applied to every row; the row's own overrides always win (a
    backbone the row names is scaled to the settings' size, ``_SIZED_BACKBONES``).
    """
    if row not in ABLATIONS:
        raise ValueError(f"ablation {row!r} unknown; allowed: {sorted(ABLATIONS)}")
    overrides = dict(ABLATIONS[row])
    allowed = DEFAULTS[overrides["name"]]
    merged = {k: v for k, v in settings.items() if k in allowed and k != "name"}
    for key in ("face_backbone", "voice_backbone"):
        size = merged.get(key) if isinstance(merged.get(key), str) else merged.get("size")
        if key in overrides and isinstance(size, str):
            overrides[key] = _SIZED_BACKBONES.get((overrides[key], size), overrides[key])
    merged.update(overrides)
    return merged


@dataclass(frozen=True)
class PaperRow:
    """One row of a results table of the papers and what reproduces it here."""

    paper: str  # AICANet | BIANet
    table: str  # "Table V", "Fig. 7", ...
    row: str  # the row as the paper labels it
    config: str  # an ABLATIONS key, a preset / evaluate setting, or "" when not reproduced
    note: str = ""  # how, or why not


_OTHERS = "other methods' rows: their numbers are quoted from their papers, not re-run here"
_T2_REASON = (
    "not reproduced: DSANet (TMM 2023) and ACIENet (TIFS 2024) are separate architectures whose "
    "papers are not available to this project; only their authors' code was studied, and ACIENet "
    "needs attribute labels (6 sex x nationality classes) whose nationality grouping is undocumented"
)

PAPER_ROWS: tuple[PaperRow, ...] = (
    # ---- AICANet (IEEE TIFS 2025)
    PaperRow(
        "AICANet",
        "Table II",
        "Baseline",
        "baseline_v2f.yaml / baseline_f2v.yaml",
        "VoxCeleb1 Wen split; evaluate --protocol wen1251 --trial-mode authors",
    ),
    PaperRow(
        "AICANet",
        "Table II",
        "AICANet",
        "aicanet_v2f.yaml / aicanet_f2v.yaml (+ _k10, _k1)",
        "Binary from K = 2, Multi-way from K = 10, Verification from K = 1 heads",
    ),
    PaperRow("AICANet", "Table II", "SVHF ... ACIENet", "", _OTHERS),
    PaperRow(
        "AICANet", "Table III", "AICANet", "aicanet_*.yaml with ingest --split-preset pins", "evaluate --protocol pins"
    ),
    PaperRow("AICANet", "Table III", "DIMNet ... ACIENet", "", _OTHERS),
    PaperRow("AICANet", "Table IV", "AICANet", "aicanet_*.yaml", "evaluate --protocol vox2test (trained on VoxCeleb1)"),
    PaperRow("AICANet", "Table IV", "SVHF-Net ... ACIENet", "", _OTHERS),
    PaperRow("AICANet", "Table V", "(a) baseline", "aicanet_t5_a_baseline"),
    PaperRow("AICANet", "Table V", "(b) L_RDSM", "aicanet_t5_b_rdsm"),
    PaperRow("AICANet", "Table V", "(c) AIA", "aicanet_t5_c_aia", "without ACA: eps = 0, both Eq. 8 branches"),
    PaperRow("AICANet", "Table V", "(d) AIA + ACA", "aicanet_t5_d_aia_aca"),
    PaperRow("AICANet", "Table V", "(e) AIA + ACA + L_RDSM", "aicanet_t5_e_full"),
    PaperRow("AICANet", "Table VI", "(a) baseline", "aicanet_t6_a_baseline"),
    PaperRow("AICANet", "Table VI", "(b) RCI", "aicanet_t6_b_rci", "relevance net frozen (no L_Rel trains it)"),
    PaperRow("AICANet", "Table VI", "(c) RCI + L_Rel", "aicanet_t6_c_rci_rel"),
    PaperRow("AICANet", "Table VI", "(d) RCI + L_Rel + DEF", "aicanet_t6_d_rci_rel_def"),
    PaperRow("AICANet", "Table VII", "Self-support without RCI", "aicanet_t7_selfsupport_without_rci"),
    PaperRow("AICANet", "Table VII", "Self-support with RCI", "aicanet_t7_selfsupport_with_rci"),
    PaperRow("AICANet", "Table VII", "DEF without", "aicanet_t7_def_without", "plain skip x + IN(f^) + IN(f~)"),
    PaperRow("AICANet", "Table VII", "DEF with", "aicanet_t7_def_with"),
    PaperRow("AICANet", "Table VIII", "Baseline", "aicanet_t5_a_baseline"),
    PaperRow(
        "AICANet",
        "Table VIII",
        "eps = 0.01 / 0.05 / 0.1 / 0.2",
        "aicanet_t8_eps_0.01 / aicanet_t8_eps_0.05 / aicanet_t8_eps_0.1 / aicanet_t8_eps_0.2",
    ),
    PaperRow("AICANet", "Table VIII", "Adaptive", "aicanet_t8_eps_adaptive"),
    PaperRow(
        "AICANet",
        "Table IX",
        "Shrinkage Thresholds [47]",
        "aicanet_t9_shrinkage",
        "DRSN soft thresholding of the projected features, no correlation threshold",
    ),
    PaperRow(
        "AICANet",
        "Table IX",
        "Principal Component [53]",
        "aicanet_t9_principal_component",
        "rank-r SVD of each correlation matrix, r = aca_pca_ratio x C'",
    ),
    PaperRow(
        "AICANet",
        "Table IX",
        "Frequency Filtering [54]",
        "aicanet_t9_frequency_filtering",
        "2-D FFT low-pass of each correlation matrix, aca_lowpass_cutoff",
    ),
    PaperRow(
        "AICANet",
        "Table IX",
        "Disentanglement [27]",
        "",
        "not reproduced: [27] is a beta-VAE model of its own and the paper does not say how it "
        "replaced ACA (where, which latent, which beta)",
    ),
    PaperRow("AICANet", "Table IX", "Adaptive Correction", "aicanet_t9_adaptive_correction"),
    PaperRow(
        "AICANet",
        "Table X",
        "L_Trip / L_LM / L_SM / L_RDSM",
        "aicanet_t10_triplet / aicanet_t10_lifted / aicanet_t10_structure / aicanet_t10_rdsm",
    ),
    PaperRow(
        "AICANet",
        "Fig. 5",
        "2:K curve, K = 2..10",
        "classifier: shared",
        "one head for every K (extension); or evaluate --scoring embedding",
    ),
    PaperRow(
        "AICANet",
        "Fig. 7",
        "alpha, beta, gamma sweeps",
        "model.alpha / model.beta / model.gamma",
        "F-V presets use alpha = 3",
    ),
    # ---- BIANet (Pattern Recognition 2025)
    PaperRow("BIANet", "Table 1", "Baseline (CNN)", "baseline_v2f.yaml / baseline_f2v.yaml"),
    PaperRow(
        "BIANet",
        "Table 1",
        "BIANet (Transformer)",
        "bianet_t1_transformer",
        "ViT-style face and voice encoders (models/backbones.py TransformerMap); the paper gives no design",
    ),
    PaperRow("BIANet", "Table 1", "BIANet (CNN)", "bianet_t1_cnn = bianet_v2f.yaml / bianet_f2v.yaml (+ _k10, _k1)"),
    PaperRow("BIANet", "Table 1", "SVHF ... ACIENet", "", _OTHERS),
    PaperRow("BIANet", "Table 2", "DSANet*+Ours", "", _T2_REASON),
    PaperRow("BIANet", "Table 2", "ACIENet*+Ours", "", _T2_REASON),
    PaperRow(
        "BIANet", "Table 3", "BIANet", "bianet_*.yaml with ingest --split-preset pins", "evaluate --protocol pins"
    ),
    PaperRow("BIANet", "Table 4", "BIANet", "bianet_*.yaml", "evaluate --protocol vox2test (trained on VoxCeleb1)"),
    PaperRow("BIANet", "Table 5", "(a) baseline", "bianet_t5_a_baseline"),
    PaperRow("BIANet", "Table 5", "(b) PIA", "bianet_t5_b_pia"),
    PaperRow("BIANet", "Table 5", "(c) NIA", "bianet_t5_c_nia", "P_cp from the plain backbone features"),
    PaperRow("BIANet", "Table 5", "(d) PIA + NIA", "bianet_t5_d_full"),
    PaperRow("BIANet", "Table 6", "Baseline", "bianet_t5_a_baseline"),
    PaperRow(
        "BIANet", "Table 6", "eps = 0.01 / 0.1 / 0.2", "bianet_t6_eps_0.01 / bianet_t6_eps_0.1 / bianet_t6_eps_0.2"
    ),
    PaperRow("BIANet", "Table 6", "Self-Learning", "bianet_t6_eps_learned"),
    PaperRow("BIANet", "Table 7", "w/o CLS", "bianet_t7_without_cls", "reverse prediction at w = 1 from the start"),
    PaperRow("BIANet", "Table 7", "w CLS", "bianet_t7_with_cls"),
    PaperRow("BIANet", "Fig. 4", "2:10 curve", "classifier: shared", "as AICANet Fig. 5"),
    PaperRow("BIANet", "Fig. 7", "tau1, tau2 sweeps", "model.tau1 / model.tau2"),
)


def paper_rows_markdown() -> str:
    """``PAPER_ROWS`` as the Markdown table of docs/MODELS.md ("Every table row")."""
    lines = ["| paper | table | row | reproduced by | note |", "|---|---|---|---|---|"]
    for r in PAPER_ROWS:
        config = f"`{r.config}`" if r.config else "—"
        lines.append(f"| {r.paper} | {r.table} | {r.row} | {config} | {r.note} |")
    return "\n".join(lines) + "\n"
