"""Property tests of the shared losses."""
import torch

from lab.losses import pseudo_huber, sq_dist


def test_sq_dist_is_per_sample_and_zero_on_identical():
    a = torch.randn(5, 3, 4)
    assert torch.equal(sq_dist(a, a), torch.zeros(5))
    b = a.clone()
    b[2, 1, 1] += 3.0
    assert torch.allclose(sq_dist(a, b), torch.tensor([0, 0, 9.0, 0, 0]))


def test_pseudo_huber_limits():
    d2 = torch.tensor([0.0, 1e-6, 1e4])
    c = 0.03
    out = pseudo_huber(d2, c)
    assert out[0] == 0
    assert torch.allclose(out[1], d2[1] / (2 * c), rtol=1e-2)  # quadratic near zero
    assert torch.allclose(out[2], d2[2].sqrt() - c, rtol=1e-4)  # linear far away
    assert (pseudo_huber(torch.linspace(0, 4, 50), c).diff() > 0).all()  # monotone in the distance
