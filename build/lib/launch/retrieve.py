"""Rank the faces of a gallery for one voice clip, using exported embeddings.

    python -m launch.retrieve --embeddings runs/eval/wen1251/embeddings/aicanet-test.zarr \
        --key vox1_id10270_5r0dWxy17C8_00001 --top 10
    python -m launch.retrieve --embeddings E.zarr --audio clip.m4a --checkpoint runs/aicanet

The gallery is every face of the embeddings store (one per clip); `--one-per-identity` keeps the
best-scoring clip of each identity, so the list reads as "who is speaking". A store key as query
reuses its exported voice embedding (the query clip's own face is left out of the gallery); an
audio file (wav/flac/m4a, any rate, decoded with PyAV to 16 kHz mono) is embedded with the
checkpoint, with the same centred window as evaluation. Cosine similarity ranks the gallery.
`--map` instead uses every clip as a query and prints the retrieval mAP in both directions (the
metric of Wen et al., CVPR 2021).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from launch.eval.embeddings import EmbeddingStore, rank_gallery, retrieval_vectors


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m launch.retrieve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embeddings", required=True, help="zarr written by `launch.evaluate --export-embeddings`")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--key", help="a store key whose voice is the query")
    q.add_argument("--audio", help="a wav/flac/m4a file whose voice is the query (needs --checkpoint)")
    q.add_argument("--map", action="store_true",
                   help="every clip as a query: retrieval mAP V->F and F->V over the whole store")
    p.add_argument("--checkpoint", help="checkpoint that produced the embeddings (for --audio)")
    p.add_argument("--top", type=int, default=10, help="how many gallery faces to print")
    p.add_argument("--one-per-identity", action="store_true", help="rank identities (best clip of each)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device for --audio queries (default: cuda if available)")
    return p


def decode_audio(path: str, sample_rate: int = 16000) -> np.ndarray:
    """int16 mono waveform at `sample_rate` from any file FFmpeg reads (PyAV)."""
    import av

    try:
        container = av.open(path)
    except (av.error.FileNotFoundError, av.error.InvalidDataError, OSError) as exc:
        raise SystemExit(f"error: cannot read audio {path}: {exc}") from None
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    chunks = []
    with container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        raise SystemExit(f"error: {path} has no audio samples")
    return np.concatenate(chunks).astype(np.int16)


@torch.no_grad()
def embed_audio_file(path: str, emb: EmbeddingStore, checkpoint: str, device) -> np.ndarray:
    """Voice embedding of an audio file, paired with the gallery's first face (see embeddings.py)."""

    from launch.checkpoint import load_model
    from launch.eval.inputs import EvalInputs, ItemLoader
    from shards.evalstore import EvalStore

    model = load_model(checkpoint, device=device)
    inputs = EvalInputs(**{k: (tuple(tuple(x) for x in v) if k == "logmel" else v)
                           for k, v in emb.attrs["inputs"].items()})
    loader = ItemLoader(EvalStore(emb.attrs["store"]), inputs)
    voice = loader.voice_from_wave(decode_audio(path, inputs.sample_rate))[None]
    batch = {"direction": "v2f", "faces": loader.faces([emb.keys[0]]).to(device), "voices": voice.to(device),
             "anchor_index": torch.zeros(1, dtype=torch.long, device=device),
             "candidate_index": torch.zeros(1, 1, dtype=torch.long, device=device)}
    idx, a_maps, c_maps = model.encode(batch)
    voice_vec, _, _ = retrieval_vectors(model, model.embed(idx, a_maps, c_maps))   # as the exported voices
    return voice_vec[0].cpu().numpy()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    emb = EmbeddingStore(args.embeddings)
    if args.map:
        from launch.eval.metrics import mean_average_precision

        own = list(range(len(emb.keys)))           # a query's own clip is not in its gallery
        v2f = mean_average_precision(emb.voice, emb.identities, emb.face, emb.identities, exclude=own)
        f2v = mean_average_precision(emb.face, emb.identities, emb.voice, emb.identities, exclude=own)
        print(f"retrieval mAP over {len(own)} clips, {len(set(emb.identities))} identities: "
              f"V->F {100 * v2f:.2f} %, F->V {100 * f2v:.2f} % (chance ~ clips per identity / clips)")
        return 0
    query_identity, exclude = None, None
    if args.key:
        i = emb.index_of(args.key)
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
