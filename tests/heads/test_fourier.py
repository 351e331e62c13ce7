"""Fourier head: a valid distribution per range that keeps the base head's range mass, smooth by construction,
trainable, and plugged into the TokenSpace range of a modality; the task base adds its penalty to the loss."""

from __future__ import annotations

import pytest
import torch

from anytoken.backbone import CausalTransformer, TransformerConfig
from anytoken.heads import LMHead
from anytoken.heads.fourier import FourierHead
from anytoken.tokenizers import TokenSpace


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny ops run fastest on one thread (several threads thrash on a shared CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def setup():
    space = TokenSpace({"text": 10, "pose": 40}, tasks=("pose_estimation",))
    model = CausalTransformer(TransformerConfig.from_name("tiny", vocab_size=space.vocab_size))
    base = LMHead(model)
    head = FourierHead.for_modality(
        base, 64, space, "pose", [(0, 24), (24, 40)], num_frequencies=6, gamma=0.01
    )
    return space, base, head


def test_distribution_inside_ranges_keeps_base_mass(setup) -> None:
    space, base, head = setup
    hidden = torch.randn(5, 7, 64)
    logits = head(hidden)
    assert logits.shape == (5, 7, space.vocab_size) and torch.isfinite(logits).all()
    p, q = logits.softmax(-1), base(hidden).softmax(-1)
    r = space.range("pose")
    for lo, hi in ((r.start, r.start + 24), (r.start + 24, r.stop)):
        torch.testing.assert_close(
            p[..., lo:hi].sum(-1), q[..., lo:hi].sum(-1), rtol=1e-3, atol=1e-6
        )  # eps per bin
        log_bins = head.bin_log_probs(0 if lo == r.start else 1, hidden)
        torch.testing.assert_close(
            log_bins.exp().sum(-1), torch.ones(5, 7), rtol=0, atol=(hi - lo) * 1e-5 + 1e-5
        )
    outside = torch.ones(space.vocab_size, dtype=torch.bool)
    outside[r.start : r.stop] = False
    torch.testing.assert_close(logits[..., outside], base(hidden)[..., outside])


def test_density_is_smooth_and_bounded_by_the_frequencies(setup) -> None:
    """A degree-N trigonometric density cannot put all mass on one bin: neighbours share it."""
    _, _, head = setup
    with torch.no_grad():
        probs = head.bin_log_probs(0, torch.randn(200, 64) * 10).exp()  # (200, 24)
    assert float(probs.max()) < 0.9
    top = probs.argmax(-1)
    inner = (top > 0) & (top < 23)
    rows = torch.arange(200)[inner]
    neighbours = probs[rows, top[inner] - 1] + probs[rows, top[inner] + 1]
    assert bool((neighbours > 0.05 * probs[rows, top[inner]]).all())


def test_learns_a_target_bin_and_penalty(setup) -> None:
    space, _, head = setup
    torch.manual_seed(0)
    hidden = torch.randn(16, 64)
    target = torch.full((16,), space.range("pose").start + 12)  # pose bin 12
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(head(hidden), target) + head.penalty(hidden)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first - 1.0
    assert all(p.grad is not None for p in head.coefficients.parameters())
    assert float(head.penalty(hidden).detach()) > 0
    head.gamma = 0.0
    assert float(head.penalty(hidden)) == 0.0


def test_bad_ranges(setup) -> None:
    space, base, _ = setup
    with pytest.raises(ValueError, match="outside pose"):
        FourierHead.for_modality(base, 64, space, "pose", [(30, 50)])
    with pytest.raises(ValueError, match="overlap"):
        FourierHead(base, 64, [(20, 30), (25, 35)])
    with pytest.raises(ValueError, match=">= 2 ordered ids"):
        FourierHead(base, 64, [(20, 21)])
    with pytest.raises(ValueError, match="num_frequencies"):
        FourierHead(base, 64, [(20, 30)], num_frequencies=0)
