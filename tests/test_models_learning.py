"""The tiny models learn a cross-modal correspondence that transfers to unseen identities.

Marked slow (about 30-100 s per model on 2 busy cores): it trains each model for 400 steps, which
is what the paper-default losses (RDSM with mu1 = 10, the Eq. 22 curriculum) need to leave chance
on this task; it guards against changes that silently stop a model from learning (a DEF init
that zeroes the backbone features did exactly that). Synthetic identities carry a latent z in [-1, 1]^3; a face shows z as its colour, a voice
as the energy profile over its mel bands during "speech" frames, each with fresh per-sample noise. Test identities are
new latents, so only a learned colour <-> spectrum mapping beats chance.
"""

import math

import pytest
import torch

from models import build_model, from_dense, tiny_overrides

FACE, MELS, FRAMES = 32, 40, 41


def render(z: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces [N, 3, S, S] coloured by z, log-mels [N, 1, M, T] whose band profile is a function of z."""
    n = z.shape[0]
    faces = z[:, :, None, None] * 0.7 + 0.3 * torch.randn(n, 3, FACE, FACE, generator=g)
    bands = torch.linspace(0, math.pi, MELS)
    profile = sum(z[:, i, None] * torch.cos((i + 1) * bands)[None] for i in range(3))
    # Speech-like on/off envelope: the voice backbone's per-utterance instance norm removes each
    # mel bin's mean over time, so identity must live in what varies over time (as in real speech).
    envelope = (torch.rand(n, 1, 1, FRAMES, generator=g) < 0.5).float()
    voices = profile[:, None, :, None] * envelope + 0.5 * torch.randn(n, 1, MELS, FRAMES, generator=g)
    return faces.clamp(-1, 1), voices


def tuples(latents: torch.Tensor, batch: int, g: torch.Generator) -> dict:
    ids = latents.shape[0]
    anchor_id = torch.randint(ids, (batch,), generator=g)
    other = (anchor_id + torch.randint(1, ids, (batch,), generator=g)) % ids
    label = torch.randint(2, (batch,), generator=g)
    cand_ids = torch.stack([torch.where(label == 0, anchor_id, other), torch.where(label == 1, anchor_id, other)], 1)
    _, voices = render(latents[anchor_id], g)
    faces, _ = render(latents[cand_ids.reshape(-1)], g)
    return from_dense(voices, faces.view(batch, 2, 3, FACE, FACE), "v2f", label)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["baseline", "aicanet", "bianet"])
def test_tiny_model_matches_unseen_identities_above_chance(name):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train_ids, test_ids = torch.rand(64, 3, generator=g) * 2 - 1, torch.rand(32, 3, generator=g) * 2 - 1
    steps = 400
    model = build_model(
        {
            "name": name,
            "num_candidates": 2,
            "total_epochs": steps,
            **tiny_overrides(name),
            "face_backbone": {"preset": "tiny", "stem_strides": [[1, 1]]},
        }
    )
    groups = model.param_groups()
    main = torch.optim.Adam([p for k, ps in groups.items() if k != "discriminator" for p in ps], lr=1e-3)
    disc = torch.optim.Adam(groups["discriminator"], lr=1e-3)
    model.train()
    for step in range(steps):
        batch = tuples(train_ids, 16, g)
        terms = model.loss(model(batch), batch, epoch=float(step))
        main.zero_grad()
        disc.zero_grad()
        (terms["total"] + terms["disc_total"]).backward()
        main.step()
        disc.step()
    test = tuples(test_ids, 400, torch.Generator().manual_seed(1))
    accuracy = (model.predict(test).argmax(1) == test["label"]).float().mean().item()
    assert accuracy > 0.7, f"{name}: 1:2 accuracy {accuracy:.3f} on unseen identities"
