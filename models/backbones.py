"""Feature extractors: ResNet-18 for faces, SE-ResNet for voices (log-mel input).

Both return a ``[N, C, H, W]`` feature map; the heads pool it to ``C x 3 x 3`` (the papers'
"512 x 3 x 3"). The face net may start from ImageNet weights loaded from a local file (the
authors' AICANet code downloads them but never loads them, docs/REFERENCES.md#a1); the
voice net always trains from scratch (BIANet §5.1).

Presets (``preset`` key of the ``face_backbone`` / ``voice_backbone`` config):

* face ``resnet18``: torchvision ResNet-18 up to ``layer4`` (512 channels, 7x7 at 224 px);
  ``imagenet_norm`` (default true) maps the contract's [-1, 1] faces to ImageNet mean/std first.
* face ``tiny``: a 4-stage ResNet of BasicBlocks for 64 px CPU runs (default 128 channels).
* voice ``seresnet34``: [3, 4, 6, 3] BasicBlocks with squeeze-excitation, widths 64..512.
* voice ``light``: the authors' shipped variant, [2, 2, 2, 2] plain BasicBlocks (no SE).
* voice ``tiny``: [1, 1, 1, 1] SE blocks, widths 16..128, for CPU demos.
* face / voice ``vit`` and ``vit_tiny``: a Transformer encoder over patches that returns a map
  (BIANet Table 1's "Transformer" backbone row; the paper does not describe it, see
  :class:`TransformerMap`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_TRANSFORMER_KEYS = {"arch", "dim", "depth", "heads", "patch", "mlp_ratio"}
# BIANet Table 1 "Transformer": ViT-style encoders of the CNN backbones' output width (512; 128 for
# the tiny CPU sizes) and roughly their output grid (7 x 7 faces at 224 px; 10 x ~12 voices at 4 s).
TRANSFORMER_FACE = {"arch": "transformer", "dim": 512, "depth": 6, "heads": 8, "patch": [32, 32], "mlp_ratio": 4}
TRANSFORMER_VOICE = {"arch": "transformer", "dim": 512, "depth": 6, "heads": 8, "patch": [4, 32], "mlp_ratio": 4}
TRANSFORMER_TINY_FACE = {"arch": "transformer", "dim": 128, "depth": 2, "heads": 4, "patch": [16, 16], "mlp_ratio": 2}
TRANSFORMER_TINY_VOICE = {"arch": "transformer", "dim": 128, "depth": 2, "heads": 4, "patch": [8, 16], "mlp_ratio": 2}

FACE_PRESETS: dict[str, dict[str, Any]] = {
    "resnet18": {"arch": "resnet18", "imagenet_norm": True},
    "tiny": {
        "arch": "resnet",
        "layers": [1, 1, 1, 1],
        "widths": [16, 32, 64, 128],
        "se": False,
        "stem_channels": [16],
        "stem_strides": [[2, 2]],
        "stage_strides": [1, 2, 2, 2],
    },
    "vit": TRANSFORMER_FACE,
    "vit_tiny": TRANSFORMER_TINY_FACE,
}

VOICE_PRESETS: dict[str, dict[str, Any]] = {
    # Stem halves time three times (T/8) and keeps the 40 mel bins, stages then stride 1,2,2,1:
    # a 2-s clip (201 frames) ends as a 10 x 7 map, close to the face's 7 x 7.
    "seresnet34": {
        "arch": "resnet",
        "layers": [3, 4, 6, 3],
        "widths": [64, 128, 256, 512],
        "se": True,
        "stem_channels": [16, 32, 64],
        "stem_strides": [[1, 2], [1, 2], [1, 2]],
        "stage_strides": [1, 2, 2, 1],
    },
    "light": {
        "arch": "resnet",
        "layers": [2, 2, 2, 2],
        "widths": [64, 128, 256, 512],
        "se": False,
        "stem_channels": [16, 32, 64],
        "stem_strides": [[1, 2], [1, 2], [1, 2]],
        "stage_strides": [1, 2, 2, 1],
    },
    "tiny": {
        "arch": "resnet",
        "layers": [1, 1, 1, 1],
        "widths": [16, 32, 64, 128],
        "se": True,
        "stem_channels": [16],
        "stem_strides": [[1, 2]],
        "stage_strides": [1, 2, 2, 2],
    },
    "vit": TRANSFORMER_VOICE,
    "vit_tiny": TRANSFORMER_TINY_VOICE,
}

_RESNET_KEYS = {"arch", "layers", "widths", "se", "se_reduction", "stem_channels", "stem_strides", "stage_strides"}


def _pair(values: Sequence[int], what: str) -> tuple[int, int]:
    """A config's ``[height, width]`` list as the 2-tuple a Conv2d takes (any other length never ran)."""
    if len(values) != 2:
        raise ValueError(f"{what} entries must be [height, width] pairs, got {list(values)}")
    return values[0], values[1]


class SqueezeExcitation(nn.Module):
    """Channel gate of Hu et al. (SENet): global average pool -> bottleneck MLP -> sigmoid.

    Pooling is per sample, so the gate never mixes tuples of a batch.
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * gate


class BasicBlock(nn.Module):
    """ResNet BasicBlock, optionally with an SE gate on the residual branch (SE-ResNet)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, se: bool = False, se_reduction: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.se = SqueezeExcitation(out_ch, se_reduction) if se else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return F.relu(out + self.shortcut(x))


class ResNetTrunk(nn.Module):
    """Configurable ResNet trunk (stem convs + 4 stages) used for voices and the tiny face net."""

    def __init__(
        self,
        in_channels: int,
        layers: Sequence[int],
        widths: Sequence[int],
        se: bool,
        stem_channels: Sequence[int],
        stem_strides: Sequence[Sequence[int]],
        stage_strides: Sequence[int],
        se_reduction: int = 8,
    ):
        super().__init__()
        if not (len(layers) == len(widths) == len(stage_strides)):
            raise ValueError(
                f"layers {list(layers)}, widths {list(widths)} and stage_strides "
                f"{list(stage_strides)} must have the same length"
            )
        if len(stem_channels) != len(stem_strides):
            raise ValueError("stem_channels and stem_strides must have the same length")
        stem: list[nn.Module] = []
        ch = in_channels
        for out_ch, stem_stride in zip(stem_channels, stem_strides):
            stem += [
                nn.Conv2d(ch, out_ch, 3, _pair(stem_stride, "stem_strides"), 1, bias=False),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
            ]
            ch = out_ch
        self.stem = nn.Sequential(*stem)
        stages = []
        for depth, width, stride in zip(layers, widths, stage_strides):
            blocks = [BasicBlock(ch, width, stride, se, se_reduction)]
            blocks += [BasicBlock(width, width, 1, se, se_reduction) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            ch = width
        self.stages = nn.Sequential(*stages)
        self.out_channels = ch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap: torch.Tensor = self.stages(self.stem(x))
        return fmap


class TransformerMap(nn.Module):
    """A Transformer encoder that returns a feature map ``[N, dim, H/ph, W/pw]`` like the CNNs.

    BIANet Table 1 reports a "Transformer" backbone row without describing it; this is the plain
    ViT recipe adapted to the map contract the attention modules and the generator need: a
    strided-conv patch embedding, a depthwise 3x3 conv positional encoding (size-agnostic, as
    voice clips differ in length; learned absolute position tables would fix the input size),
    ``depth`` pre-norm encoder layers with GELU MLPs, a final LayerNorm, tokens folded back into
    the patch grid.
    """

    def __init__(self, in_channels: int, dim: int, depth: int, heads: int, patch: Sequence[int], mlp_ratio: int = 4):
        super().__init__()
        if dim % heads:
            raise ValueError(f"transformer dim {dim} must be divisible by heads {heads}")
        self.embed = nn.Conv2d(in_channels, dim, _pair(patch, "patch"), stride=_pair(patch, "patch"))
        self.position = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim * mlp_ratio, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out_channels = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        x = x + self.position(x)
        n, c, h, w = x.shape
        tokens: torch.Tensor = self.norm(self.blocks(x.flatten(2).transpose(1, 2)))
        return tokens.transpose(1, 2).reshape(n, c, h, w)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FaceResNet18(nn.Module):
    """torchvision ResNet-18 without ``avgpool``/``fc``; ``[N,3,H,W] -> [N,512,H/32,W/32]``.

    Faces arrive as (x/255 - 0.5)/0.5 (ARCHITECTURE.md §4, the authors' normalisation). ImageNet
    weights were trained on (x/255 - mean)/std, so with ``imagenet_norm`` the input is mapped to
    that range first (an affine per channel, no statistics): the pretrained filters then see the
    input distribution they were trained for.
    """

    mean: torch.Tensor  # buffers
    std: torch.Tensor

    def __init__(self, pretrained_path: str | None = None, imagenet_norm: bool = True):
        super().__init__()
        self.imagenet_norm = imagenet_norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        if pretrained_path is not None:
            load_imagenet_weights(net, pretrained_path)
        self.body = nn.Sequential(
            net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
        )
        self.out_channels = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.imagenet_norm:
            x = ((x + 1) * 0.5 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        fmap: torch.Tensor = self.body(x)
        return fmap


# torchvision's ResNet18_Weights.IMAGENET1K_V1 file, as the torch hub cache stores it.
IMAGENET_RESNET18_FILE = "resnet18-f37072fd.pth"
IMAGENET_RESNET18_URL = f"https://download.pytorch.org/models/{IMAGENET_RESNET18_FILE}"


def hub_cache_weights() -> str:
    """Where the torch hub cache keeps torchvision's ResNet-18 ImageNet weights (may not exist)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", IMAGENET_RESNET18_FILE)


def resolve_pretrained(path: str) -> str:
    """``face_pretrained`` -> a local file: ``imagenet`` means the torch hub cache's copy.

    Nothing is downloaded at run time (a training job on a cluster node has no network, and a
    silent fallback to random init would make a paper preset train something else).
    """
    if path == "imagenet":
        path = hub_cache_weights()
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"face_pretrained=imagenet: the torch hub cache has no {IMAGENET_RESNET18_FILE} at {path}. "
                f'Fetch it once on a machine with network (python -c "import torchvision; '
                f"torchvision.models.resnet18(weights='IMAGENET1K_V1')\", or download {IMAGENET_RESNET18_URL} "
                f"into {os.path.dirname(path)}), or set model.face_pretrained=/path/to/{IMAGENET_RESNET18_FILE}."
            )
    return path


def load_imagenet_weights(net: nn.Module, path: str) -> None:
    """Load a torchvision ResNet-18 state dict from a local file (nothing is ever downloaded).

    ``path`` may be ``imagenet`` (the torch hub cache's copy, :func:`resolve_pretrained`). The
    classification head (``fc.*``) may be absent or present; every trunk weight must match, so a
    wrong file fails loudly instead of silently training from random init.
    """
    path = resolve_pretrained(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"face_pretrained={path!r} does not exist. Give the path of a torchvision ResNet-18 "
            f"ImageNet state dict ({IMAGENET_RESNET18_FILE}), 'imagenet' for the torch hub cache's copy, "
            "or null to start from random init."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(f"{path} is not a ResNet-18 state dict: missing {missing[:5]}, unexpected {unexpected[:5]}")


class VoiceEncoder(nn.Module):
    """Per-utterance instance norm over time on the log-mel, then an (SE-)ResNet trunk.

    The instance norm (no affine, statistics over the time axis of one utterance and one mel
    bin) removes channel/loudness offsets the way the authors' front end does, and it is per
    sample, so a tuple's score never depends on the rest of the batch.
    """

    def __init__(self, trunk: ResNetTrunk | TransformerMap):
        super().__init__()
        self.trunk = trunk
        self.out_channels = trunk.out_channels

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        if logmel.dim() != 4 or logmel.shape[1] != 1:
            raise ValueError(f"voices must be [N, 1, n_mels, T] log-mel, got {tuple(logmel.shape)}")
        x = F.instance_norm(logmel.squeeze(1), eps=1e-5).unsqueeze(1)
        fmap: torch.Tensor = self.trunk(x)
        return fmap


def _resolve(spec: str | dict[str, Any], presets: dict[str, dict[str, Any]], what: str) -> dict[str, Any]:
    if isinstance(spec, str):
        spec = {"preset": spec}
    if not isinstance(spec, dict):
        raise ValueError(f"{what} must be a preset name {sorted(presets)} or a dict, got {spec!r}")
    spec = dict(spec)
    preset = spec.pop("preset", None)
    if preset is None:
        raise ValueError(f"{what} needs a 'preset' in {sorted(presets)}")
    if preset not in presets:
        raise ValueError(f"{what}.preset={preset!r} is unknown; allowed: {sorted(presets)}")
    merged = dict(presets[preset])
    allowed = {"resnet": _RESNET_KEYS, "transformer": _TRANSFORMER_KEYS}.get(merged["arch"], {"arch", "imagenet_norm"})
    for key in spec:
        if key not in allowed:
            raise ValueError(
                f"{what}.{key} is not a setting of preset {preset!r}; allowed: {sorted(allowed | {'preset'})}"
            )
    merged.update(spec)
    return merged


def _trunk(settings: dict[str, Any], in_channels: int) -> ResNetTrunk | TransformerMap:
    if settings["arch"] == "transformer":
        return TransformerMap(
            in_channels, settings["dim"], settings["depth"], settings["heads"], settings["patch"], settings["mlp_ratio"]
        )
    return ResNetTrunk(
        in_channels,
        settings["layers"],
        settings["widths"],
        settings["se"],
        settings["stem_channels"],
        settings["stem_strides"],
        settings["stage_strides"],
        settings.get("se_reduction", 8),
    )


def build_face_backbone(
    spec: str | dict[str, Any], pretrained_path: str | None = None
) -> FaceResNet18 | ResNetTrunk | TransformerMap:
    """Face encoder from a preset name or ``{"preset": ..., overrides}``."""
    settings = _resolve(spec, FACE_PRESETS, "face_backbone")
    if settings["arch"] == "resnet18":
        if not isinstance(settings["imagenet_norm"], bool):
            raise ValueError(f"face_backbone.imagenet_norm={settings['imagenet_norm']!r} must be true or false")
        return FaceResNet18(pretrained_path, settings["imagenet_norm"])
    if pretrained_path is not None:
        raise ValueError(
            "face_pretrained is only supported with face_backbone preset 'resnet18' "
            "(ImageNet weights exist for that architecture only)"
        )
    return _trunk(settings, in_channels=3)


def build_voice_backbone(spec: str | dict[str, Any]) -> VoiceEncoder:
    """Voice encoder (instance-norm front + trunk) from a preset name or a dict."""
    return VoiceEncoder(_trunk(_resolve(spec, VOICE_PRESETS, "voice_backbone"), in_channels=1))
