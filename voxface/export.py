"""``voxface-export``: a training checkpoint -> a folder anyone can load (Hugging Face Hub layout).

    voxface-export --checkpoint runs/demo --format hub --out hub/demo
    python -m voxface.export --checkpoint runs/demo --format hub --out hub/demo --results runs/demo/eval/*/results.json

Writes ``config.json`` (model + preprocessing, every default filled, no machine paths),
``model.safetensors`` and ``README.md``, a model card with the evaluation table, protocol and trial
checksums (from the run's ``eval/*/results.json``, as ``make demo`` writes them, or ``--results``),
the training data and the limits. ``voxface.load_matcher(out)`` then loads it offline and scores
exactly as the checkpoint does. Format details: ``launch/shareable.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FORMATS = ("hub",)
_OWN_FILES = {"config.json", "model.safetensors", "README.md"}


def run_folder_of(path: Path) -> Path | None:
    """The run folder (the one holding ``checkpoints/``) of a checkpoint path, if there is one."""
    path = path.resolve()
    for p in (path, *path.parents):
        if (p / "checkpoints").is_dir():
            return p
    return None


def find_results(checkpoint: Path) -> list[Path]:
    """``<run>/eval/**/results.json`` of the checkpoint's run folder (what ``make demo`` writes)."""
    run = run_folder_of(checkpoint)
    return sorted(run.glob("eval/**/results.json")) if run else []


def _same_run(given: str, checkpoint: Path) -> bool:
    run = run_folder_of(checkpoint) or checkpoint.resolve()
    p = Path(given)
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, run.parent / p.name]
    return any(c.exists() and (c.resolve() == run or run in c.resolve().parents) for c in candidates)


def evaluation_rows(results_files: list[Path], checkpoint: Path) -> list[tuple[Path, dict, list]]:
    """(file, meta, [(row name, result)]) for each results.json, keeping this checkpoint's rows
    (all rows when a file inside the run's own eval folder has a single row)."""
    out = []
    for path in results_files:
        try:
            data = json.loads(Path(path).read_text())
            rows = list(data["results"].items())
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise SystemExit(f"error: {path}: not an evaluation results.json ({exc})") from None
        mine = [(n, r) for n, r in rows if _same_run(str((r.get("checkpoint") or {}).get("path", "")), checkpoint)]
        if not mine and len(rows) == 1:
            mine = rows
        if mine:
            out.append((Path(path), data.get("meta") or {}, mine))
    return out


def _evaluation_section(evals) -> list[str]:
    from launch.eval.tables import markdown

    if not evals:
        return [
            "No evaluation results were found beside this checkpoint (`<run>/eval/*/results.json`; "
            "`--results` names others). Evaluate it with `python -m launch.evaluate` "
            "(docs/EVALUATION.md) before relying on it.",
            "",
        ]
    lines = []
    for _path, meta, rows in evals:
        multi_k = max((t.get("max_k") or 0 for t in (meta.get("trials") or {}).values()), default=0) or None
        title = f"{meta.get('protocol', '?')}: {meta.get('description', '')}".rstrip(": ")
        table = markdown(rows, title=title, multi_k=multi_k, meta=meta).replace("## ", "### ", 1)
        lines += [table.rstrip(), ""]
        test_split = "/".join(Path(str((meta.get("splits") or {}).get("test", "?"))).parts[-2:])
        lines += [
            f"Protocol: `{meta.get('protocol')}`, test split `{test_split}`, "
            f"identity disjointness with the training data: {meta.get('identity_disjointness', '?')}, "
            f"scoring `{meta.get('scoring', '?')}`, evaluated {meta.get('created', '?')}.",
            "",
        ]
        for role, t in (meta.get("trials") or {}).items():
            lines.append(f"- {role} trial file sha256: `{t.get('sha256')}` ({t.get('source')}, max K {t.get('max_k')})")
        lines.append("")
    return lines


def _data_line(row: dict) -> str:
    facts = [f"{key} {row[key]}" for key in ("identities", "samples", "split_preset") if row.get(key) is not None]
    line = f"- `{row['shards']}`: " + (", ".join(facts) or row.get("note", ""))
    return line + (f", shard fingerprint `{row['fingerprint']}`" if row.get("fingerprint") else "")


def model_card(config: dict, evals) -> str:
    """README.md of a Hub folder: what the model is, how to use it, how it scored, what it is not."""
    mc, dc, prep, tr = config["model_config"], config["data_config"], config["preprocessing"], config["training"]
    k = mc["num_candidates"]
    task = "verification (K = 1: is this pair a match?)" if k == 1 else f"1:{k} matching"
    lines = [
        "---",
        "library_name: voxface",
        "tags: [voice-face-matching, cross-modal, " + str(mc["name"]) + "]",
        "---",
        "",
        f"# voxface {mc['name']} (K = {k}, {dc['direction']})",
        "",
        f"A cross-modal voice-face matching model ({mc['name']}; AICANet: TIFS 2025, BIANet: Pattern "
        f"Recognition 2025, baseline: their shared backbone) trained for {task} in direction "
        f"`{dc['direction']}` (v2f: a voice picks a face; f2v: a face picks a voice; both: alternating). "
        f"Trained {tr.get('epoch')} epochs ({tr.get('step')} steps).",
        "",
        "## Use",
        "",
        "```python",
        "import voxface",
        'm = voxface.load_matcher("<this folder>")',
        'r = m.match(voice="x.wav", faces=["a.jpg", "b.jpg"])   # or face=..., voices=[...]',
        "print(r.method, [(c.rank, c.score, c.path) for c in r.candidates])",
        "```",
        "",
        "```bash",
        "voxface-match --checkpoint <this folder> --voice x.wav --faces a.jpg b.jpg   # --json for JSON",
        "```",
        "",
        f"Scores come from the model's own K = {k} head where the number of candidates is {k} and the "
        "direction was trained, else from its embeddings (cosine; BIANet: its counterfactual "
        "cos(h^) - w cos(h~)); the output names the scorer. Head scores are logits, embedding scores "
        "cosines: rank with them, do not read them as probabilities.",
        "",
        "## Evaluation",
        "",
        *_evaluation_section(evals),
        "## Training data",
        "",
        *[_data_line(row) for row in tr.get("data", [])],
        *([] if tr.get("data") else ["- the checkpoint names no training shard sets"]),
        f"- face backbone initialisation: {tr.get('face_initialisation', '?')}",
        "",
        "## Preprocessing (what `load_matcher` does to your files)",
        "",
        f"- voice: any file soundfile or FFmpeg reads, resampled to {prep['sample_rate']} Hz, channels averaged; "
        f"a centred {prep['audio_seconds']} s window (shorter clips loop-padded); log-mel "
        + ", ".join(f"{key}={v}" for key, v in prep["log_mel"].items())
        + ".",
        f"- face: **a face crop is expected** (no face detector runs); the centred square is resized "
        f"to {prep['ingest_face_size']} px and JPEG-encoded (quality {prep['jpeg_quality']}) as ingest does, "
        f"then to {prep['face_size']} px, pixels in [-1, 1].",
        "",
        "## Limits",
        "",
        "- Matching a voice to a face rests on attributes both share (gender, age, ethnicity), not on "
        "identity: expect far-from-perfect accuracy on strangers, and do not use it to identify people.",
        "- It has seen only the training data above; other languages, recording conditions, ages or "
        "populations may score differently. VoxCeleb identities are celebrities, mostly English-speaking.",
        "- Input faces must be crops around one face; a wide photo is squared around its centre.",
        f"- The K = {k} head scores only {k} candidate(s); other K use the embeddings.",
        *(
            [
                "- AICANet's scores depend on the whole candidate set (its attention compares the pairs): "
                "the same face can score differently among other candidates."
            ]
            if mc["name"] == "aicanet"
            else []
        ),
        "",
        f"Weights sha256 (voxface fingerprint): `{config['weights_sha256']}`. Format `{config['format']}`; "
        "`config.json` lists every model and preprocessing setting.",
        "",
    ]
    return "\n".join(lines)


def export_hub(checkpoint, out, results=None, force: bool = False) -> Path:
    """Write the Hub folder of ``checkpoint`` into ``out`` (see the module docstring); returns ``out``."""
    from launch.checkpoint import CheckpointError
    from launch.shareable import hub_config, read_payload, write_hub_folder

    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} is a file, not a folder")
    if out.is_dir() and not force:
        foreign = [p.name for p in out.iterdir() if p.name not in _OWN_FILES]
        if foreign:
            raise CheckpointError(
                f"--out {out} holds other files ({', '.join(sorted(foreign)[:3])}); "
                f"choose an empty folder or pass --force"
            )
    payload = read_payload(checkpoint)
    if payload.get("source") == "hub":
        raise CheckpointError(f"{checkpoint} is already a Hub folder")
    evals = evaluation_rows([Path(r) for r in results] if results else find_results(checkpoint), checkpoint)
    card = model_card(hub_config(payload), evals)
    return write_hub_folder(payload, out, card=card)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="voxface-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint folder, run folder or model.pt")
    p.add_argument(
        "--format", default="hub", choices=FORMATS, help="hub: config.json + model.safetensors + README.md model card"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--results",
        nargs="+",
        help="evaluation results.json file(s) for the model card (default: <run>/eval/**/results.json)",
    )
    p.add_argument("--force", action="store_true", help="write into a folder that holds other files")
    return p


def main(argv=None) -> int:
    from launch.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        out = export_hub(args.checkpoint, args.out, args.results, args.force)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    config = json.loads((out / "config.json").read_text())
    print(
        f"wrote {out}: config.json, model.safetensors ({(out / 'model.safetensors').stat().st_size / 1e6:.1f} MB), "
        f"README.md; weights sha256 {config['weights_sha256'][:16]}..."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
