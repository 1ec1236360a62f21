"""voxface: cross-modal voice-face matching (AICANet, BIANet), the import front door.

    import voxface
    matcher = voxface.load_matcher("runs/demo")            # checkpoint, run folder or Hub folder
    result = matcher.match(voice="x.wav", faces=["a.jpg", "b.jpg"])
    print(result.best.path, result.method)

    voxface.export_hub("runs/demo", "hub/demo")            # config.json + model.safetensors + README.md

The project's layout stays ``pipeline/`` (ingest), ``shards/`` (format, loader), ``models/`` and
``launch/`` (training, evaluation); this package is the public API on top of them and is imported
by none of them. docs/API.md describes it.
"""

from voxface.files import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, BadFile, read_face, read_voice
from voxface.matcher import Candidate, Matcher, MatchInputError, MatchResult, load_matcher


def export_hub(checkpoint, out, results=None, force: bool = False):
    """Write the Hub folder (config.json, model.safetensors, README.md) of a checkpoint; see
    :func:`voxface.export.export_hub` (imported on use, so ``python -m voxface.export`` runs clean)."""
    from voxface.export import export_hub as _export

    return _export(checkpoint, out, results=results, force=force)


__all__ = [
    "AUDIO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "BadFile",
    "Candidate",
    "MatchInputError",
    "MatchResult",
    "Matcher",
    "export_hub",
    "load_matcher",
    "read_face",
    "read_voice",
]
