import math

import torch
import torch.nn.functional as F

from sslbench.losses import nt_xent


def transcribed_nt_xent(z1, z2, tau):
    """SimCLR eq. 1 written out with loops: mean over the 2N anchors of −log softmax."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n2 = z.shape[0]
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        sims = [torch.dot(z[i], z[k]) / tau for k in range(n2)]
        denom = sum(torch.exp(sims[k]) for k in range(n2) if k != i)
        total = total - torch.log(torch.exp(sims[j]) / denom)
    return total / n2


def test_hand_computed_case():
    # Orthogonal unit vectors, τ = 1: each anchor has s = 1 with its positive, 0 with the two
    # negatives, so ℓ = −log(e / (e + 2)) = log(1 + 2/e).
    z = torch.eye(2)
    loss = nt_xent(z, z.clone(), temperature=1.0)
    assert math.isclose(loss.item(), math.log(1 + 2 / math.e), rel_tol=1e-6)


def test_matches_transcription_of_the_paper():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    for tau in (0.1, 0.5, 1.0):
        assert torch.allclose(nt_xent(z1, z2, tau), transcribed_nt_xent(z1, z2, tau), atol=1e-5)


def test_invariances():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    base = nt_xent(z1, z2, 0.2)
    perm = torch.randperm(6, generator=g)
    assert torch.allclose(nt_xent(z1[perm], z2[perm], 0.2), base, atol=1e-6)  # batch order
    assert torch.allclose(nt_xent(3 * z1, 0.5 * z2, 0.2), base, atol=1e-6)  # scale
    assert torch.allclose(nt_xent(z2, z1, 0.2), base, atol=1e-6)  # symmetric in the views


def test_bounds_and_perfect_alignment():
    # Aligned positives with orthogonal negatives beat random pairs; loss ≥ 0 always.
    z = torch.eye(8) * 5
    aligned = nt_xent(z, z.clone(), 0.1)
    g = torch.Generator().manual_seed(2)
    random_pairs = nt_xent(torch.randn(8, 8, generator=g), torch.randn(8, 8, generator=g), 0.1)
    assert 0 <= aligned.item() < random_pairs.item()


def test_gradient_check():
    g = torch.Generator().manual_seed(3)
    z1 = torch.randn(4, 3, generator=g, dtype=torch.double, requires_grad=True)
    z2 = torch.randn(4, 3, generator=g, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: nt_xent(a, b, 0.3), (z1, z2))
