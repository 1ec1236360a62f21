"""Synthetic VoxCeleb1/VoxCeleb2-format corpus with a learnable, known voice-face association.

`make_corpus(out, identities=..., ...)` is the stable entry point for tests and the demo;
`python -m pipeline.synth --help` is the command line. See docs/SYNTHETIC_CORPUS.md.
"""

from .corpus import CorpusExistsError, make_corpus
from .meta import MetaFormatError, MetaRow, read_vox1_meta, read_vox2_meta
from .txtfile import FaceTrack, TrackFormatError, read_track

__all__ = [
    "CorpusExistsError",
    "FaceTrack",
    "MetaFormatError",
    "MetaRow",
    "TrackFormatError",
    "make_corpus",
    "read_track",
    "read_vox1_meta",
    "read_vox2_meta",
]
