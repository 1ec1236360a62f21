"""Rank a user's face images for a voice file, or voice files for a face image.

    import voxface
    m = voxface.load_matcher("runs/demo")                 # a checkpoint, run folder or Hub folder
    result = m.match(voice="x.wav", faces=["a.jpg", "b.jpg"])
    result = m.match(face="y.jpg", voices=["p.m4a", "q.flac", "r.wav"])
    for c in result.candidates: print(c.rank, c.score, c.path)

Why it scores through ``launch.eval``: a number from here must be the number evaluation would
give the same items. The files are prepared as ingest stores them (:mod:`voxface.files`), then
served to ``launch.eval.inputs.ItemLoader`` (the middle face frame, the centred loop-padded voice
window, the checkpoint's log-mel and face size) and scored by ``launch.eval.scoring.ModelScorer``
on one tuple: the query and every candidate, exactly as a 1:K trial is scored.

Scorer (``scoring="auto"``): the model's own head where it was trained for that K (number of
usable candidates; K = 1 is the verification head) and for that direction (``data.direction``;
``both`` trains both), else the embedding score; BIANet's embedding score keeps its
counterfactual, cos(h^) - w cos(h~). The result names the scorer used. ``head`` refuses where the
head does not fit, ``embedding`` always uses the embeddings. Scores of different scorers are not
comparable with each other (head: logits; embedding: cosines).

Candidates that cannot be read are skipped and listed in ``result.skipped`` (one line each); a
query that cannot be read raises :class:`MatchInputError` with one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from voxface.files import BadFile, read_face, read_voice

SCORINGS = ("auto", "head", "embedding")
#: candidates per backbone pass when scores do not depend on the other candidates
CHUNK = 64


class MatchInputError(ValueError):
    """A query or candidate list that cannot be matched; the message is one line."""


@dataclass(frozen=True)
class Candidate:
    rank: int
    score: float
    path: str


@dataclass
class MatchResult:
    """Candidates best first; ``method`` names the scorer (``head (K=2)``, ``embedding``...)."""

    query: str
    direction: str  # v2f: voice query, face candidates; f2v the reverse
    method: str
    candidates: list[Candidate]
    skipped: list[BadFile] = field(default_factory=list)

    @property
    def best(self) -> Candidate:
        return self.candidates[0]

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "direction": self.direction,
            "method": self.method,
            "candidates": [{"rank": c.rank, "score": c.score, "path": c.path} for c in self.candidates],
            "skipped": [{"path": b.path, "reason": b.reason} for b in self.skipped],
        }


class FileItems:
    """The evaluation-store interface ``ItemLoader`` reads (``index_of``, ``faces``, ``audio``,
    ``sample_rate``), over a user's files. A key names the file and its size and mtime, so a file
    changed between two calls is read again."""

    sample_rate = 16000

    def __init__(self, preprocessing: dict):
        self.ingest_face_size = int(preprocessing["ingest_face_size"])
        self.jpeg_quality = int(preprocessing["jpeg_quality"])
        self._paths: list[str] = []
        self._index: dict[str, int] = {}

    def key_for(self, path) -> str:
        p = Path(path)
        try:
            st = p.stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        key = f"{os.path.abspath(p)}|{stamp}"
        if key not in self._index:
            self._index[key] = len(self._paths)
            self._paths.append(str(path))
        return key

    def index_of(self, key: str) -> int:
        return self._index[key]

    def faces(self, i: int) -> np.ndarray:
        return read_face(self._paths[i], self.ingest_face_size, self.jpeg_quality)[None]

    def audio(self, i: int) -> np.ndarray:
        return read_voice(self._paths[i])


def head_direction_trained(data_config: dict, direction: str) -> bool:
    trained = (data_config or {}).get("direction", "v2f")
    return trained == "both" or trained == direction


class Matcher:
    """A loaded model plus the preprocessing it was trained with (see the module docstring)."""

    def __init__(self, model, payload: dict, source: str, device="cpu", scoring: str = "auto"):
        from launch.eval.inputs import EvalInputs, ItemLoader

        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
        self.model, self.payload, self.source = model, payload, str(source)
        self.device, self.scoring = device, scoring
        self.preprocessing = dict(payload["preprocessing"])
        prep = self.preprocessing
        self.inputs = EvalInputs(
            float(prep["audio_seconds"]),
            int(prep["face_size"]),
            int(prep["sample_rate"]),
            tuple(sorted(dict(prep["log_mel"]).items())),
        )
        self.items = FileItems(prep)
        self.loader = ItemLoader(self.items, self.inputs, cache_items=1024)
        self.name = payload["model_config"].get("name")
        self.trained_k = getattr(model, "num_candidates", None)

    def __repr__(self) -> str:
        return f"Matcher({self.name}, K={self.trained_k}, from {self.source})"

    # ---- scorer choice ----------------------------------------------------------------------
    def method_for(self, direction: str, k: int) -> str:
        from launch.eval.scoring import head_supports

        fits = head_supports(self.model, k) and head_direction_trained(self.payload.get("data_config"), direction)
        if self.scoring == "embedding" or (self.scoring == "auto" and not fits):
            return "embedding"
        if not fits:
            raise MatchInputError(
                f"the model's head was trained for K={self.trained_k} "
                f"({self.payload.get('data_config', {}).get('direction')}) and cannot score "
                f"{k} candidate(s) {direction}; use scoring='auto' or 'embedding'"
            )
        return "head"

    def _pair_independent(self) -> bool:
        """Does a candidate's embedding score ignore the other candidates? (not AICANet's AIA)"""
        return not any(getattr(m, "pairwise", False) is True for m in self.model.modules())

    # ---- reading ----------------------------------------------------------------------------
    def _prepare(self, path, modality: str) -> str:
        key = self.items.key_for(path)
        if modality == "voice":
            self.loader.voice(key)
        else:
            self.loader.face(key)
        return key

    # ---- matching ---------------------------------------------------------------------------
    def match(self, *, voice=None, faces=None, face=None, voices=None) -> MatchResult:
        """Rank ``faces`` for ``voice``, or ``voices`` for ``face`` (paths; see the module docstring)."""
        from launch.eval.scoring import ModelScorer

        v2f = voice is not None and faces is not None and face is None and voices is None
        f2v = face is not None and voices is not None and voice is None and faces is None
        if not (v2f or f2v):
            raise MatchInputError("give voice= with faces=[...], or face= with voices=[...]")
        direction = "v2f" if v2f else "f2v"
        query, cands = (voice, faces) if direction == "v2f" else (face, voices)
        if isinstance(cands, (str, os.PathLike)):
            cands = [cands]
        cands = list(cands)
        if not cands:
            raise MatchInputError(f"no {'faces' if direction == 'v2f' else 'voices'} to rank")
        q_mod, c_mod = ("voice", "face") if direction == "v2f" else ("face", "voice")
        try:
            q_key = self._prepare(query, q_mod)
        except BadFile as err:
            raise MatchInputError(f"{q_mod} query {err}") from None
        keys, paths, skipped = [], [], []
        for c in cands:
            try:
                keys.append(self._prepare(c, c_mod))
                paths.append(str(c))
            except BadFile as err:
                skipped.append(err)
        if not keys:
            raise MatchInputError(f"none of the {len(cands)} {c_mod} file(s) can be read; first: {skipped[0]}")
        method = self.method_for(direction, len(keys))
        scorer = ModelScorer(self.model, self.loader, batch_size=1, method=method, device=self.device, progress=False)
        if method == "embedding" and self._pair_independent():
            parts = [scorer.score(direction, [q_key], [keys[s : s + CHUNK]])[0][0] for s in range(0, len(keys), CHUNK)]
            scores = np.concatenate(parts)
        else:
            scores = scorer.score(direction, [q_key], [keys])[0][0]
        order = np.argsort(-scores, kind="stable")
        ranked = [Candidate(r, float(scores[j]), paths[j]) for r, j in enumerate(order, 1)]
        return MatchResult(str(query), direction, self.describe_method(method, len(keys)), ranked, skipped)

    def describe_method(self, method: str, k: int) -> str:
        if method == "head":
            return f"head (K={k}{', verification logit' if k == 1 else ''})"
        if getattr(self.model, "cfg", {}).get("nia"):
            return "embedding (counterfactual cosine, Eq. 22)"
        return "embedding (cosine)"


def load_matcher(path, device: str | torch.device | None = None, scoring: str = "auto") -> Matcher:
    """A :class:`Matcher` for a training checkpoint (folder, run folder, model.pt) or a Hub folder
    written by ``voxface-export``. Reads nothing from the network; ``torch.load`` stays
    ``weights_only=True``. Raises ``launch.checkpoint.CheckpointError`` (one line) for a path that
    holds no usable model."""
    from launch.checkpoint import model_from_payload
    from launch.shareable import read_payload

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    payload = read_payload(path)
    # the weights come from the payload: an ImageNet file named by the training machine is not read
    build = dict(payload, model_config={**payload["model_config"], "face_pretrained": None})
    model = model_from_payload(build, device=device, source=path)
    return Matcher(model, payload, path, device=device, scoring=scoring)
