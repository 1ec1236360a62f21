"""Evaluate checkpoints on the papers' protocols: trials -> scores -> tables, plot, embeddings.

    python -m launch.evaluate --checkpoint runs/aicanet --data data/shards --protocol wen1251
    python -m launch.evaluate --checkpoint runs/base runs/aicanet runs/bianet --data DIR --protocol vox2test
    python -m launch.evaluate --trials-only --data DIR --protocol wen1251 --gender-matched

Steps: (1) trial lists for the test and validation splits are generated from `--seed` (or read
with `--trials`/`--val-trials`, or imported from published lists with `--import-list`) and saved
under `<out>/trials/`; (2) test identities are checked to be disjoint from the training split's;
(3) every checkpoint scores every trial (`launch.eval.scoring`); (4) metrics with bootstrap CIs
(`launch.eval.evaluation`); (5) `<out>/results.{md,csv,json}` (one row per checkpoint, the
comparison table when several are given), `<out>/accuracy_vs_k.png`, optional embeddings.
docs/EVALUATION.md describes every convention.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from launch.eval.evaluation import evaluate
from launch.eval.importers import StoreResolver, import_list, load_vox1_names, merge_trial_sets
from launch.eval.inputs import EvalInputs, ItemLoader
from launch.eval.plots import plot_accuracy_vs_k
from launch.eval.protocols import PROTOCOLS, get_protocol
from launch.eval.rows import RowMergeError, merge_rows
from launch.eval.scoring import SCORING_METHODS, ModelScorer
from launch.eval.tables import MAIN_COLUMNS, headline, scorer_cell, write_all
from launch.eval.trials import (
    POSITIVE_VIDEO_RULES,
    TRIAL_MODES,
    TrialFileError,
    TrialOptions,
    TrialSet,
    check_disjoint,
    generate_for_store,
    store_fingerprint,
)
from pipeline.bundled import meta_file
from shards.evalstore import EvalStore

DEFAULT_META = str(meta_file("voxceleb1"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--checkpoint",
        nargs="+",
        default=[],
        help="checkpoint folder(s), run folder(s), model.pt file(s) or exported Hub folder(s); "
        "several -> comparison table",
    )
    p.add_argument(
        "--names",
        nargs="+",
        help="row names for the checkpoints (default: folder names); checkpoints given the same name "
        "form one row, each column from the checkpoint whose head was trained for it "
        "(the K = 2, K = 10 and K = 1 trainings of one model)",
    )
    p.add_argument("--data", required=True, help="ingest output root holding <dataset>/<split>/eval.zarr")
    p.add_argument(
        "--protocol", default="wen1251", choices=sorted(PROTOCOLS), help="which splits to use (see docs/EVALUATION.md)"
    )
    p.add_argument("--test-split", help="override the protocol's test split folder")
    p.add_argument("--val-split", help="override the protocol's validation split folder (threshold)")
    p.add_argument("--train-split", help="override the training split folder (identity-disjointness check)")
    p.add_argument("--out", help="output folder (default: runs/eval/<protocol>)")
    g = p.add_argument_group("trials")
    g.add_argument("--trials", help="existing test trial file (skips generation)")
    g.add_argument("--val-trials", help="existing validation trial file (skips generation)")
    g.add_argument(
        "--import-list",
        nargs="+",
        default=[],
        help="published list(s) to evaluate instead of generated test trials (one per direction)",
    )
    g.add_argument("--meta", default=DEFAULT_META, help="vox1_meta.csv for name -> id mapping of imported lists")
    g.add_argument(
        "--face-fallback",
        default="video",
        choices=("video", "identity"),
        help="how imported face paths without a clip resolve (see launch/eval/importers.py)",
    )
    g.add_argument("--seed", type=int, default=0, help="trial generation seed")
    g.add_argument(
        "--trial-mode",
        default="strict",
        choices=TRIAL_MODES,
        help="strict (default: positive from another video, one row per probe) or authors (the "
        "authors' published lists: 8 probes x 50 rows per identity, V-F positive from the "
        "voice's own video); use authors when comparing with the papers' tables",
    )
    g.add_argument(
        "--probes-per-identity", type=int, default=50, help="probes per identity and direction (strict mode)"
    )
    g.add_argument("--max-k", type=int, default=10, help="largest K of the 1:K curve (nested negatives)")
    g.add_argument("--gender-matched", action="store_true", help="negatives of the probe's gender (G lists)")
    g.add_argument(
        "--positive-video",
        default="different",
        choices=POSITIVE_VIDEO_RULES,
        help="positive from a different (default), the same, or any video of the probe (strict mode)",
    )
    g.add_argument(
        "--allow-seen-identities",
        action="store_true",
        help="do not fail when trial identities occur in the training split",
    )
    g.add_argument("--trials-only", action="store_true", help="write the trial files and stop")
    s = p.add_argument_group("scoring")
    s.add_argument("--batch-size", type=int, default=64, help="tuples per model call (results do not depend on it)")
    s.add_argument(
        "--scoring",
        default="head",
        choices=SCORING_METHODS,
        help="head (default, the papers' scorer) = the model's own classifier, only for the K it was "
        "trained for; embedding = cosine of shared embeddings (BIANet: minus w x the reverse "
        "cosine), any K; auto = head where it fits K, embedding elsewhere",
    )
    s.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device for scoring (default: cuda if available, else cpu)",
    )
    s.add_argument(
        "--audio-seconds",
        type=float,
        help="evaluation audio window in s (default: the checkpoint data config crop_seconds)",
    )
    s.add_argument("--face-size", type=int, help="face input size (default: the checkpoint's data config)")
    s.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for the 95%% CIs")
    s.add_argument(
        "--export-embeddings",
        action="store_true",
        help="also write <out>/embeddings/<name>-test.zarr for launch.retrieve",
    )
    s.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def _open_store(folder: Path, role: str) -> EvalStore:
    try:
        return EvalStore(folder / "eval.zarr")
    except FileNotFoundError as exc:
        raise SystemExit(f"error: no {role} evaluation store: {exc}") from None


def training_identities(folder: Path) -> set[str] | None:
    """Identities of the training shard set (the keys of its index.json `identities`, ARCHITECTURE.md
    §2, read as pipeline.shardset.existing_split_identities reads them), or None when absent."""
    index = folder / "index.json"
    if not index.is_file():
        return None
    return set(json.loads(index.read_text()).get("identities", []))


def _split_name(folder: Path) -> str:
    return f"{folder.parent.name}/{folder.name}"


def trial_options(args) -> TrialOptions:
    """The trial rules the flags ask for (one-line error for a contradiction)."""
    if args.trial_mode == "authors":
        if args.probes_per_identity != 50 or args.positive_video != "different":
            raise SystemExit(
                "error: --trial-mode authors fixes the probes (8 per identity, 50 rows) and the "
                "positive's video; drop --probes-per-identity / --positive-video"
            )
        return TrialOptions.authors(seed=args.seed, max_k=args.max_k, gender_matched=args.gender_matched)
    return TrialOptions(
        seed=args.seed,
        probes_per_identity=args.probes_per_identity,
        max_k=args.max_k,
        gender_matched=args.gender_matched,
        positive_video=args.positive_video,
    )


def trial_path(args, out: Path, role: str) -> Path:
    """The trial file a role's trials are read from (--trials / --val-trials) or saved to."""
    given = args.trials if role == "test" else args.val_trials
    return Path(given) if given else out / "trials" / f"{role}.json"


def prepare_trials(args, folders: dict[str, Path], stores: dict[str, EvalStore], out: Path) -> dict[str, TrialSet]:
    options = trial_options(args)
    trials: dict[str, TrialSet] = {}
    for role, given in (("test", args.trials), ("val", args.val_trials)):
        if role not in stores:
            continue
        store = stores[role]
        fp = store_fingerprint(store.keys, store.identities, store.videos)
        if given:
            try:
                trials[role] = TrialSet.load(given, fingerprint=fp)
            except (TrialFileError, FileNotFoundError) as exc:
                raise SystemExit(f"error: {role} trials: {exc}") from None
            continue
        if role == "test" and args.import_list:
            names = load_vox1_names(args.meta)
            resolver = StoreResolver(store, face_fallback=args.face_fallback)
            sets = []
            for path in args.import_list:
                ts, report = import_list(path, resolver, names, split=_split_name(folders[role]))
                print(report.summary())
                sets.append(ts)
            ts = merge_trial_sets(sets)
            if not any(ts.match.values()) and not any(ts.verify.values()):
                raise SystemExit(
                    "error: no imported trial could be resolved against the test store; "
                    "see the unresolved reasons above"
                )
        else:
            n_ids = feasible_max_k(store, options.gender_matched)
            opts = options
            if n_ids < options.max_k:
                print(
                    f"note: {_split_name(folders[role])} has {n_ids} identities"
                    f"{' of the larger gender' if options.gender_matched else ''}; 1:K trials go up to "
                    f"K={n_ids} instead of {options.max_k}"
                )
                opts = replace(options, max_k=max(n_ids, 2))
            try:
                ts = generate_for_store(store, opts, split=_split_name(folders[role]))
            except ValueError as exc:
                raise SystemExit(f"error: {exc}") from None
            if not any(ts.match.values()):
                raise SystemExit(
                    f"error: no {role} trial could be generated from {folders[role]}; skipped: {ts.header['skipped']}"
                )
        path = ts.save(trial_path(args, out, role))
        print(f"{role} trials: {path} ({ts.header['counts']}; skipped: {ts.header['skipped'] or 'none'})")
        trials[role] = ts
    return trials


def feasible_max_k(store, gender_matched: bool) -> int:
    """Largest K any probe can have: #identities, or of the most frequent gender when matched."""
    first_gender = dict(zip(store.identities, store.genders))
    if not gender_matched:
        return len(first_gender)
    per_gender = Counter(g for g in first_gender.values() if g is not None)
    return max(per_gender.values(), default=0)


def training_folders(args, folders) -> list[Path]:
    """The protocol's training split plus every shard set the checkpoints were trained on.

    A model may have been trained on more than the protocol's train split (the demo adds the
    VoxCeleb2 dev identities), so the checkpoints' own `data_config["shards"]` are checked too.
    """
    from launch.checkpoint import read_model_file

    found = [Path(folders["train"])]
    for ckpt in args.checkpoint:
        try:
            shards = read_model_file(ckpt, mmap=True).get("data_config", {}).get("shards") or []
        except Exception:  # an unreadable checkpoint is reported (and skipped) when it is scored
            continue
        found += [Path(s) for s in ([shards] if isinstance(shards, str) else shards)]
    unique = []
    for folder in found:
        if folder.resolve() not in {u.resolve() for u in unique}:
            unique.append(folder)
    return unique


def check_identities(args, folders, trials) -> str:
    train_ids, checked, missing = set(), [], []
    for folder in training_folders(args, folders):
        ids = training_identities(folder)
        if ids is None:
            missing.append(str(folder))
        else:
            train_ids |= ids
            checked.append(_split_name(folder))
    if missing:
        print(f"note: identity disjointness not checked against {', '.join(missing)} (no index.json)")
    if not checked:
        print("identity disjointness: not checked (no training shard set found)")
        return "not checked"
    for role, ts in trials.items():
        try:
            check_disjoint(ts, train_ids)
        except ValueError as exc:
            if not args.allow_seen_identities:
                raise SystemExit(
                    f"error: {role} trials: {exc} (pass --allow-seen-identities to evaluate anyway)"
                ) from None
            print(f"warning: {role} trials: {exc}")
            return "overlap allowed by --allow-seen-identities"
    print(f"identity disjointness: ok ({len(train_ids)} training identities in {', '.join(checked)})")
    return "ok"


def evaluate_checkpoint(args, ckpt: str, name: str, stores, trials, out: Path) -> dict:
    from launch.checkpoint import model_from_payload
    from launch.shareable import read_payload

    payload = read_payload(ckpt)  # a training checkpoint or an exported Hub folder
    model = model_from_payload(payload, device=args.device, source=ckpt)
    inputs = EvalInputs.from_data_config(payload.get("data_config"), args.audio_seconds, args.face_size)
    loaders = {role: ItemLoader(store, inputs) for role, store in stores.items()}
    scorers = {
        role: ModelScorer(
            model, loaders[role], args.batch_size, args.scoring, args.device, progress=not args.no_progress
        )
        for role in stores
    }
    t0 = time.perf_counter()
    result = evaluate(
        scorers["test"],
        trials["test"],
        trials.get("val"),
        n_boot=args.bootstrap,
        seed=args.seed,
        val_scorer=scorers.get("val"),
    )
    result["checkpoint"] = {
        "path": str(ckpt),
        "epoch": payload.get("epoch"),
        "step": payload.get("step"),
        "model": payload["model_config"].get("name"),
        "num_candidates": payload["model_config"].get("num_candidates"),
    }
    result["inputs"] = {
        "audio_seconds": inputs.audio_seconds,
        "face_size": inputs.face_size,
        "face_frame": "middle",
        "audio_window": "centred, loop-padded",
    }
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if args.export_embeddings:
        from launch.eval.embeddings import export_embeddings
        from launch.shareable import weights_fingerprint

        path = export_embeddings(
            model,
            loaders["test"],
            stores["test"],
            out / "embeddings" / f"{name}-test.zarr",
            {
                "checkpoint": str(Path(ckpt).resolve()),
                "model": result["checkpoint"]["model"],
                "checkpoint_fingerprint": weights_fingerprint(payload["state_dict"]),
            },
            args.batch_size,
            args.device,
            progress=not args.no_progress,
        )
        result["embeddings"] = str(path)
        print(f"embeddings: {path}")
    return result


def summary(rows, multi_k: int | None = None) -> str:
    """Plain-text table for the terminal: value and 95 % CI per column, one line per checkpoint."""
    width = max(len("checkpoint"), *(len(n) for n, _ in rows))
    fmt = lambda c: "-" if c is None else f"{c['value']:.1f} [{c['lo']:.0f},{c['hi']:.0f}]"  # noqa: E731
    lines = [f"{'checkpoint':<{width}}  " + "  ".join(f"{c:>17}" for c in MAIN_COLUMNS)]
    for name, res in rows:
        h = headline(res, multi_k)
        lines.append(f"{name:<{width}}  " + "  ".join(f"{fmt(h[c]):>17}" for c in MAIN_COLUMNS))
        scorers = [scorer_cell(h[c]).replace(" model)", ")") for c in MAIN_COLUMNS]
        lines.append(f"{'  scored by':<{width}}  " + "  ".join(f"{s:>17}" for s in scorers))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not args.checkpoint and not args.trials_only:
        raise SystemExit("error: give --checkpoint (or --trials-only to just write trial files)")
    if args.names and len(args.names) != len(args.checkpoint):
        raise SystemExit(f"error: {len(args.names)} --names for {len(args.checkpoint)} checkpoints")
    missing = [str(c) for c in args.checkpoint if not Path(c).exists()]
    if missing:  # a mistyped path fails before any trial file or table is written
        raise SystemExit(f"error: checkpoint not found: {', '.join(missing)} (nothing written)")
    protocol = get_protocol(args.protocol)
    folders = protocol.folders(args.data, args.test_split, args.val_split, args.train_split)
    out = Path(args.out or Path("runs") / "eval" / args.protocol)
    stores = {"test": _open_store(folders["test"], "test")}
    if (folders["val"] / "eval.zarr").exists():
        stores["val"] = _open_store(folders["val"], "val")
    else:
        print(f"note: no validation store at {folders['val']}: verification accuracy will be reported as '-'")
    trials = prepare_trials(args, folders, stores, out)
    disjoint = check_identities(args, folders, trials)
    if args.trials_only:
        return 0
    names = args.names or [Path(c).name for c in args.checkpoint]
    from launch.checkpoint import CheckpointError

    parts: dict[str, list] = {}  # row name -> [(checkpoint, result)]; one row may join several checkpoints
    failed = {}
    for i, (ckpt, name) in enumerate(zip(args.checkpoint, names)):
        print(f"== {name}: {ckpt}")
        try:
            result = evaluate_checkpoint(args, ckpt, name, stores, trials, out)
        except (CheckpointError, FileNotFoundError) as exc:
            # one unusable checkpoint must not cost the others' results
            print(f"error: {name}: {exc}; skipped")
            failed[f"{name} ({ckpt})" if names.count(name) > 1 else name] = str(exc)
            continue
        parts.setdefault(name, []).append((str(ckpt), result))
        # written as soon as it exists, so a later failure never loses finished work
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        stem = name if names.count(name) == 1 else f"{name}.{i}"
        (out / "checkpoints" / f"{stem}.json").write_text(json.dumps(result, indent=1))
    try:
        rows = [(name, merge_rows(name, row_parts)) for name, row_parts in parts.items()]
    except RowMergeError as exc:
        raise SystemExit(f"error: {exc}") from None
    if not rows:
        raise SystemExit(f"error: no checkpoint could be evaluated ({failed})")
    meta = {
        "protocol": args.protocol,
        "description": protocol.description,
        "splits": {r: str(f) for r, f in folders.items()},
        "trials": {
            r: {
                "source": t.header["source"],
                "split": t.header["split"],
                "sha256": t.header["body_sha256"],
                "path": str(trial_path(args, out, r)),
                "identities": len(
                    {x["identity"] for section in (t.match, t.verify) for rows in section.values() for x in rows}
                ),
                "options": t.header.get("options"),
                "max_k": t.max_k,
                "skipped": t.header.get("skipped"),
            }
            for r, t in trials.items()
        },
        "identity_disjointness": disjoint,
        "batch_size": args.batch_size,
        "scoring": args.scoring,
        "failed_checkpoints": failed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    title = f"{args.protocol}: {protocol.description}"
    paths = write_all(out, rows, meta, title=title, multi_k=trials["test"].max_k)
    png = plot_accuracy_vs_k(rows, out / "accuracy_vs_k.png", title=title)
    print()
    print(summary(rows, trials["test"].max_k))
    print(f"\ntables: {paths['md']}, {paths['csv']}, {paths['json']}\nplot:   {png}")
    if failed:
        print(f"{len(failed)} checkpoint(s) skipped: {', '.join(failed)} (reasons above and in results.json)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
