"""Results tables in the papers' layout (AICANet Table II-IV, BIANet Tables 1-4).

Columns: Binary (1:2) V-F / F-V, Multi-way (1:K, K = 10 by default) V-F / F-V, Verification
(accuracy at the validation threshold) V-F / F-V; a second table adds AUC and EER, a third the
accuracy-vs-K curve. One row per checkpoint, so the same writer makes the single-model table and
the comparison table (`--checkpoint A B C`). Values are percentages with the 95 % bootstrap CI.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

DIRS = (("v2f", "V-F"), ("f2v", "F-V"))


def _pct(x):
    return None if x is None else 100.0 * x


def headline(result: dict, multi_k: int | None = None) -> dict:
    """{column: {"value", "lo", "hi", "method", ...}} (percent) for the papers' six columns + AUC/EER.

    Multi-way is 1:`multi_k` (the trial file's largest K, 10 by default); with `multi_k` = 2 there
    is no multi-way column, and a row whose scorers stop below it shows '-', never a smaller K.
    """
    cols: dict = {}
    mk = str(multi_k or 10)
    for d, label in DIRS:
        res = result["directions"].get(d, {})
        match = res.get("matching", {})
        for name, key in (("Binary", "2"), ("Multi-way", mk)):
            m = match.get(key) if not (name == "Multi-way" and key == "2") else None
            cols[f"{name} {label}"] = (
                None
                if m is None
                else {
                    "value": _pct(m["acc"]),
                    "lo": _pct(m["ci"][0]),
                    "hi": _pct(m["ci"][1]),
                    "method": m["method"],
                    "trained_k": m.get("trained_k"),
                    "checkpoint": m.get("checkpoint"),
                }
            )
        ver = res.get("verification")
        for name, key in (("Verification", "acc"), ("AUC", "auc"), ("EER", "eer")):
            if ver is None or ver.get(key) is None:
                cols[f"{name} {label}"] = None
                continue
            ci = ver["acc_ci" if key == "acc" else f"{key}_ci"]
            cols[f"{name} {label}"] = {
                "value": _pct(ver[key]),
                "lo": _pct(ci[0]),
                "hi": _pct(ci[1]),
                "method": ver["method"],
                "trained_k": ver.get("trained_k"),
                "checkpoint": ver.get("checkpoint"),
            }
    return cols


def scorer_cell(c) -> str:
    """Which scorer produced a column: `head (K=10 model)`, `embedding (K=2 model)`, or `-`."""
    if c is None:
        return "-"
    k = c.get("trained_k")
    return f"{c['method']} (K={k} model)" if k is not None else c["method"]


MAIN_COLUMNS = ["Binary V-F", "Binary F-V", "Multi-way V-F", "Multi-way F-V", "Verification V-F", "Verification F-V"]
ROC_COLUMNS = ["AUC V-F", "AUC F-V", "EER V-F", "EER F-V"]


def _cell(c) -> str:
    if c is None:
        return "-"
    if c["lo"] is None:
        return f"{c['value']:.1f}"
    return f"{c['value']:.1f} ({c['lo']:.1f}-{c['hi']:.1f})"


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def curve(result: dict, direction: str) -> dict[int, dict]:
    return {int(k): v for k, v in result["directions"].get(direction, {}).get("matching", {}).items()}


def describe_trials(meta: dict) -> list[str]:
    """One line per trial set: what the numbers were computed on (source, split, size, options, checksum)."""
    from launch.eval.trials import TrialOptions

    lines = []
    for role, t in (meta or {}).get("trials", {}).items():
        opts = t.get("options") or {}
        try:
            detail = TrialOptions(**opts).describe() + (
                ", gender-matched negatives" if opts.get("gender_matched") else ""
            )
        except (TypeError, ValueError):  # imported lists, or a file from an older version
            detail = ", ".join(f"{k}={v}" for k, v in opts.items() if k != "seed")
        lines.append(
            f"- {role} trials: {t.get('source')} on `{t.get('split')}`, {t.get('identities')} identities"
            + (f", {detail}" if detail else "")
            + f", sha256 {str(t.get('sha256'))[:12]}"
        )
    return lines


def markdown(
    rows: list[tuple[str, dict]], title: str = "", multi_k: int | None = None, meta: dict | None = None
) -> str:
    """Three Markdown tables (paper layout, ROC metrics, accuracy vs K) for `rows` of (name, result)."""
    heads = [(name, headline(res, multi_k)) for name, res in rows]
    mk = multi_k or 10
    out = []
    if title:
        out += [f"## {title}", ""]
    trial_lines = describe_trials(meta)
    if trial_lines:
        out += trial_lines + [""]
    out += [
        f"Accuracy in % with 95 % bootstrap CI over identities. Binary = 1:2, Multi-way = 1:{mk}, "
        "Verification = accuracy of the head's own match decision (head scorer) or at the threshold "
        "chosen on the validation split (embedding scorer). '-': no checkpoint of the row was scored "
        "for that column (see the scorer table).",
        "",
    ]
    out.append(_md(["Method"] + MAIN_COLUMNS, [[n] + [_cell(h[c]) for c in MAIN_COLUMNS] for n, h in heads]))
    out += [
        "",
        "Scorer of each column: `head` = the model's classifier trained for that K (the papers' "
        "scorer), `embedding` = cosine of the shared embeddings (BIANet: minus w times the reverse "
        "cosine), not the papers' scorer.",
        "",
    ]
    out.append(_md(["Method"] + MAIN_COLUMNS, [[n] + [scorer_cell(h[c]) for c in MAIN_COLUMNS] for n, h in heads]))
    out += ["", "Verification ROC: AUC (higher is better) and EER (lower is better), in %.", ""]
    out.append(_md(["Method"] + ROC_COLUMNS, [[n] + [_cell(h[c]) for c in ROC_COLUMNS] for n, h in heads]))
    ks = sorted({k for _, r in rows for d, _ in DIRS for k in curve(r, d)})
    if ks:
        out += ["", "Accuracy (%) vs number of candidates K (the papers' Fig. 5 as numbers).", ""]
        body = []
        for name, res in rows:
            for d, label in DIRS:
                c = curve(res, d)
                if c:
                    body.append([name, label] + [f"{100 * c[k]['acc']:.1f}" if k in c else "-" for k in ks])
        out.append(_md(["Method", "Direction"] + [f"K={k}" for k in ks], body))
    out += ["", "Scoring conventions: docs/EVALUATION.md."]
    return "\n".join(out) + "\n"


def write_csv(path: str | os.PathLike, rows: list[tuple[str, dict]]) -> Path:
    """Long CSV: one line per (method, metric, direction, K) with value and CI bounds (fractions)."""
    path = Path(path)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "method",
                "metric",
                "direction",
                "k",
                "value",
                "ci_low",
                "ci_high",
                "n",
                "scoring",
                "trained_k",
                "checkpoint",
            ]
        )
        for name, res in rows:
            for d, label in DIRS:
                r = res["directions"].get(d, {})
                for k, m in sorted(((int(k), m) for k, m in r.get("matching", {}).items())):
                    w.writerow(
                        [
                            name,
                            "matching_acc",
                            label,
                            k,
                            m["acc"],
                            *m["ci"],
                            m["n"],
                            m["method"],
                            m.get("trained_k"),
                            m.get("checkpoint"),
                        ]
                    )
                ver = r.get("verification")
                if ver:
                    for key in ("acc", "auc", "eer"):
                        if ver.get(key) is not None:
                            ci = ver["acc_ci" if key == "acc" else f"{key}_ci"]
                            w.writerow(
                                [
                                    name,
                                    f"verification_{key}",
                                    label,
                                    1,
                                    ver[key],
                                    *ci,
                                    ver["n"],
                                    ver["method"],
                                    ver.get("trained_k"),
                                    ver.get("checkpoint"),
                                ]
                            )
    return path


def write_all(
    outdir: str | os.PathLike,
    rows: list[tuple[str, dict]],
    meta: dict,
    stem: str = "results",
    title: str = "",
    multi_k: int | None = None,
) -> dict[str, Path]:
    """`<stem>.md`, `<stem>.csv` and `<stem>.json` (full results + run metadata) in `outdir`."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"md": outdir / f"{stem}.md", "csv": outdir / f"{stem}.csv", "json": outdir / f"{stem}.json"}
    paths["md"].write_text(markdown(rows, title, multi_k, meta))
    write_csv(paths["csv"], rows)
    with open(paths["json"], "w") as fh:
        json.dump({"meta": meta, "results": {name: res for name, res in rows}}, fh, indent=1)
    return paths
