"""Rank the faces of a gallery for one voice clip, using exported embeddings.

    python -m launch.retrieve --embeddings runs/eval/wen1251/embeddings/aicanet-test.zarr \
        --key vox1_id10270_5r0dWxy17C8_00001 --top 10
    python -m launch.retrieve --embeddings E.zarr --audio clip.m4a --checkpoint runs/aicanet

The gallery is every face of the embeddings store (one per clip); `--one-per-identity` keeps the
best-scoring clip of each identity, so the list reads as "who is speaking". A store key as query
reuses its exported voice embedding (the query clip's own face is left out of the gallery); an
audio file (anything soundfile or FFmpeg reads, any rate and channels, read as ingest reads it:
16 kHz, the channel mean) is embedded with the checkpoint, with the same centred window as
evaluation. Cosine similarity ranks the gallery.

The checkpoint (a training checkpoint or an exported Hub folder) must be the one that made the
embeddings: its weights' sha256 (`launch.shareable.weights_fingerprint`) is compared with the one
the export recorded, and a different model is refused. The evaluation store is found from any
working directory (absolute path, else relative to the embeddings). Bad keys, stores and
checkpoints end with one `error:` line.
`--map` instead uses every clip as a query and prints the retrieval mAP in both directions (the
metric of Wen et al., CVPR 2021).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from launch.eval.embeddings import EmbeddingStore, rank_gallery, retrieval_vectors


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.retrieve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--embeddings", required=True, help="zarr written by `launch.evaluate --export-embeddings`")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--key", help="a store key whose voice is the query")
    q.add_argument("--audio", help="a wav/flac/m4a file whose voice is the query (needs --checkpoint)")
    q.add_argument(
        "--map", action="store_true", help="every clip as a query: retrieval mAP V->F and F->V over the whole store"
    )
    p.add_argument("--checkpoint", help="checkpoint that produced the embeddings (for --audio)")
    p.add_argument("--top", type=int, default=10, help="how many gallery faces to print")
    p.add_argument("--one-per-identity", action="store_true", help="rank identities (best clip of each)")
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device for --audio queries (default: cuda if available)",
    )
    return p


def decode_audio(path: str, sample_rate: int = 16000) -> np.ndarray:
    """int16 mono waveform at 16 kHz, read as ingest reads audio (``pipeline.extract.read_audio``:
    soundfile for wav/flac, FFmpeg for the rest, the one downmix rule); one-line exit otherwise."""
    from pipeline.extract import SAMPLE_RATE, ClipError, read_audio

    if sample_rate != SAMPLE_RATE:
        raise SystemExit(
            f"error: the embeddings were made at {sample_rate} Hz; audio queries are read at {SAMPLE_RATE}"
        )
    if not Path(path).is_file():
        raise SystemExit(f"error: cannot read audio {path}: no such file")
    try:
        wave = read_audio(str(path))
    except ClipError as exc:
        raise SystemExit(f"error: cannot read audio {path}: {exc.reason}") from None
    if wave.size == 0:
        raise SystemExit(f"error: {path} has no audio samples")
    return wave


def open_embeddings(path: str) -> EmbeddingStore:
    """The embeddings store, or a one-line exit that says what to do."""
    try:
        return EmbeddingStore(path)
    except FileNotFoundError as exc:
        raise SystemExit(f"error: {exc}") from None
    except Exception as exc:  # not a zarr group, a foreign zarr, a truncated copy
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SystemExit(
            f"error: {path} is not an embeddings store written by `launch.evaluate --export-embeddings` ({first})"
        ) from None


def resolve_store(emb: EmbeddingStore) -> Path:
    """The evaluation store the embeddings were made from, from any working directory.

    Exports record the store's absolute path and its path relative to the embeddings folder
    (``store_relative``), so a copied or moved pair of folders is still found; an older export's
    relative ``store`` is tried from here and from beside the embeddings."""
    attrs, base = emb.attrs, emb.path.resolve().parent
    tried = []
    for cand in (attrs.get("store"), attrs.get("store_relative")):
        if not cand:
            continue
        p = Path(cand)
        for full in [p] if p.is_absolute() else [base / p, Path.cwd() / p]:
            tried.append(str(full))
            if full.exists():
                return full
    raise SystemExit(
        f"error: the evaluation store of {emb.path} is not where the export recorded it "
        f"(tried {', '.join(dict.fromkeys(tried)) or 'nothing: no store recorded'}); "
        f"re-export the embeddings with `launch.evaluate --export-embeddings`"
    )


def check_fingerprint(emb: EmbeddingStore, checkpoint: str, payload: dict) -> None:
    """Refuse a checkpoint whose weights are not the ones that made the embeddings."""
    from launch.shareable import weights_fingerprint

    recorded = emb.attrs.get("checkpoint_fingerprint")
    if recorded is None:
        print(
            f"warning: {emb.path} predates weight fingerprints; cannot check that {checkpoint} made it", file=sys.stderr
        )
        return
    found = weights_fingerprint(payload["state_dict"])
    if found != recorded:
        raise SystemExit(
            f"error: {checkpoint} did not make these embeddings (weights sha256 {found[:12]}, "
            f"the export recorded {recorded[:12]} from {emb.attrs.get('checkpoint')}); give that "
            f"checkpoint, or re-export the embeddings with this one"
        )


@torch.no_grad()
def embed_audio_file(path: str, emb: EmbeddingStore, checkpoint: str, device) -> np.ndarray:
    """Voice embedding of an audio file, paired with the gallery's first face (see embeddings.py)."""

    from launch.checkpoint import CheckpointError, model_from_payload
    from launch.eval.inputs import EvalInputs, ItemLoader
    from launch.shareable import read_payload
    from shards.evalstore import EvalStore

    try:
        payload = read_payload(checkpoint)
    except CheckpointError as exc:
        raise SystemExit(f"error: --checkpoint: {exc}") from None
    check_fingerprint(emb, checkpoint, payload)
    inputs = EvalInputs(
        **{k: (tuple(tuple(x) for x in v) if k == "logmel" else v) for k, v in emb.attrs["inputs"].items()}
    )
    wave = decode_audio(path, inputs.sample_rate)
    try:
        model = model_from_payload(
            dict(payload, model_config={**payload["model_config"], "face_pretrained": None}),
            device=device,
            source=checkpoint,
        )
    except CheckpointError as exc:
        raise SystemExit(f"error: --checkpoint: {exc}") from None
    loader = ItemLoader(EvalStore(resolve_store(emb)), inputs)
    voice = loader.voice_from_wave(wave)[None]
    batch = {
        "direction": "v2f",
        "faces": loader.faces([emb.keys[0]]).to(device),
        "voices": voice.to(device),
        "anchor_index": torch.zeros(1, dtype=torch.long, device=device),
        "candidate_index": torch.zeros(1, 1, dtype=torch.long, device=device),
    }
    idx, a_maps, c_maps = model.encode(batch)
    voice_vec, _, _ = retrieval_vectors(model, model.embed(idx, a_maps, c_maps))  # as the exported voices
    return voice_vec[0].cpu().numpy()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.top < 1:
        raise SystemExit("error: --top must be >= 1")
    emb = open_embeddings(args.embeddings)
    if args.map:
        from launch.eval.metrics import mean_average_precision

        own = list(range(len(emb.keys)))  # a query's own clip is not in its gallery
        v2f = mean_average_precision(emb.voice, emb.identities, emb.face, emb.identities, exclude=own)
        f2v = mean_average_precision(emb.face, emb.identities, emb.voice, emb.identities, exclude=own)
        print(
            f"retrieval mAP over {len(own)} clips, {len(set(emb.identities))} identities: "
            f"V->F {100 * v2f:.2f} %, F->V {100 * f2v:.2f} % (chance ~ clips per identity / clips)"
        )
        return 0
    query_identity, exclude = None, None
    if args.key:
        try:
            i = emb.index_of(args.key)
        except KeyError:
            raise SystemExit(
                f"error: key {args.key!r} is not in {args.embeddings} ({len(emb.keys)} clips; keys look "
                f"like {emb.keys[0]!r})"
            ) from None
        query, query_identity, exclude = emb.voice[i], emb.identities[i], i
    else:
        if not args.checkpoint:
            raise SystemExit("error: --audio needs --checkpoint (the model that produced the embeddings)")
        query = embed_audio_file(args.audio, emb, args.checkpoint, args.device)
    order, scores = rank_gallery(query, emb.face)
    ranked = [int(j) for j in order if j != exclude]
    if args.one_per_identity:
        seen, unique = set(), []
        for j in ranked:
            if emb.identities[j] not in seen:
                seen.add(emb.identities[j])
                unique.append(j)
        ranked = unique
    print(f"query: {args.key or args.audio}" + (f" (identity {query_identity})" if query_identity else ""))
    print(f"gallery: {len(ranked)} {'identities' if args.one_per_identity else 'faces'} from {args.embeddings}")
    print(f"{'rank':>4}  {'score':>7}  {'identity':<10}  key")
    for r, j in enumerate(ranked[: args.top], 1):
        mark = "  <- match" if emb.identities[j] == query_identity else ""
        print(f"{r:>4}  {scores[j]:7.4f}  {emb.identities[j]:<10}  {emb.keys[j]}{mark}")
    if query_identity is not None:
        hits = [r for r, j in enumerate(ranked, 1) if emb.identities[j] == query_identity]
        print(f"first correct face at rank {hits[0]}" if hits else "no face of the query identity in the gallery")
    return 0


if __name__ == "__main__":
    sys.exit(main())
