"""Named protocols -> split folders of the ingest output (`<data>/<dataset>/<split>/eval.zarr`).

* `wen1251`, `wen1225`: Wen et al. letter split of VoxCeleb1 (A/B val, C/D/E test, F-Z train).
  They differ in which identities ingest kept (all 1,251 vs the 1,225 with VGGFace faces); the
  harness evaluates whatever the split folder holds and reports its identity count.
* `pins`: the Learnable-PINs split (901 / 100 / 250 unseen-unheard test identities).
* `vox2test`: cross-dataset generalisation, a VoxCeleb1-trained model on the VoxCeleb2 test
  identities; the verification threshold still comes from the *training dataset's* val split
  (`voxceleb1/val`), since choosing it on VoxCeleb2 data would leak test-domain information.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Protocol:
    name: str
    test: str
    val: str
    train: str
    description: str

    def folders(
        self, data: str | Path, test: str | None = None, val: str | None = None, train: str | None = None
    ) -> dict[str, Path]:
        """Split folders under `data`; explicit paths override the protocol's defaults."""
        data = Path(data)
        return {
            "test": Path(test) if test else data / self.test,
            "val": Path(val) if val else data / self.val,
            "train": Path(train) if train else data / self.train,
        }


PROTOCOLS = {
    "wen1251": Protocol(
        "wen1251",
        "voxceleb1/test",
        "voxceleb1/val",
        "voxceleb1/train",
        "VoxCeleb1 letter split, all identities (test C/D/E)",
    ),
    "wen1225": Protocol(
        "wen1225",
        "voxceleb1/test",
        "voxceleb1/val",
        "voxceleb1/train",
        "VoxCeleb1 letter split, 1,225 identities with VGGFace faces (test 189)",
    ),
    "pins": Protocol(
        "pins",
        "voxceleb1/test",
        "voxceleb1/val",
        "voxceleb1/train",
        "VoxCeleb1 Learnable-PINs split (test 250 unseen-unheard)",
    ),
    "vox2test": Protocol(
        "vox2test",
        "voxceleb2/test",
        "voxceleb1/val",
        "voxceleb1/train",
        "cross-dataset: VoxCeleb2 test identities, threshold from VoxCeleb1 val",
    ),
}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None
