"""Quantizers: round trips indices -> codes -> indices, gradients, codebook liveness, fp32, DDP-free."""

from __future__ import annotations

import pytest
import torch

from anytoken.tokenizers.quantizers import (
    FSQ,
    ResidualVectorQuantizer,
    VectorQuantizer,
    rotate_to,
    usage_and_perplexity,
)


def clusters(n: int = 2048, dim: int = 8, k: int = 64, seed: int = 0) -> torch.Tensor:
    """``n`` vectors around ``k`` well-separated centres (the same centres for every ``seed``)."""
    centres = torch.randn(k, dim, generator=torch.Generator().manual_seed(1234)) * 3
    g = torch.Generator().manual_seed(seed)
    return centres[torch.randint(k, (n,), generator=g)] + 0.05 * torch.randn(n, dim, generator=g)


@pytest.mark.parametrize("ema", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
def test_vq_round_trip_and_shapes(ema: bool, normalize: bool) -> None:
    vq = VectorQuantizer(8, 32, ema=ema, normalize=normalize)
    vq.train()
    vq(clusters(512))  # initialises from data
    vq.eval()
    x = torch.randn(3, 5, 8)
    out = vq(x)
    assert out.quantized.shape == x.shape and out.indices.shape == (3, 5) and out.indices.dtype == torch.long
    assert out.counts.shape == (1, 32) and out.counts.sum() == 15
    torch.testing.assert_close(out.quantized, vq.lookup(out.indices))
    ids = torch.arange(32)
    assert torch.equal(vq(vq.lookup(ids)).indices, ids)  # indices -> codes -> indices


def test_kmeans_init_and_ema_keep_every_code_alive() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 64, dead_threshold=0.5)
    vq.train()
    for step in range(30):
        vq(clusters(2048, seed=step))
    vq.eval()
    usage, perplexity = usage_and_perplexity(vq(clusters(4096, seed=99)).counts)
    assert usage > 0.9 and perplexity > 40


def test_dead_codes_restart_from_batch_vectors() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 16, init="random", dead_threshold=1.0)
    vq.train()
    far = torch.randn(256, 4) + 50  # far from every random code: one code would take all of it
    for _ in range(5):
        vq(far)
    assert (vq.embed - 50).abs().max(dim=1).values.lt(10).float().mean() > 0.8  # codes moved to the data
    assert (vq(far).counts > 0).sum() > 8


@pytest.mark.parametrize("gradient", ["ste", "rotation"])
def test_gradients_reach_input_and_learned_codebook(gradient: str) -> None:
    vq = VectorQuantizer(8, 16, ema=False, gradient=gradient)
    vq.train()
    x = torch.randn(64, 8, requires_grad=True)
    out = vq(x)
    (out.quantized.square().sum() + out.loss).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert vq.embed.grad is not None and vq.embed.grad.abs().sum() > 0


def test_rotation_trick_value_is_the_code() -> None:
    x, q = torch.randn(10, 6, requires_grad=True), torch.randn(10, 6)
    torch.testing.assert_close(rotate_to(x, q), q, atol=1e-5, rtol=1e-5)


def test_vq_runs_in_fp32_under_autocast() -> None:
    vq = VectorQuantizer(8, 16).eval()
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(x)
    assert out.quantized.dtype == torch.bfloat16 and out.indices.dtype == torch.long
    assert torch.equal(out.indices, vq.nearest(x.float()))


def test_vq_rejects_bad_config_and_input() -> None:
    with pytest.raises(ValueError, match="codebook_size"):
        VectorQuantizer(8, 1)
    with pytest.raises(ValueError, match="gradient"):
        VectorQuantizer(8, 4, gradient="magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size 8"):
        VectorQuantizer(8, 4)(torch.randn(2, 7))


def test_residual_vq_levels_dropout_and_round_trip() -> None:
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(8, 32, num_levels=4, quantizer_dropout=1.0)
    rvq.train()
    seen = {rvq(clusters(256)).indices.shape[-1] for _ in range(12)}
    assert len(seen) > 1 and max(seen) <= 4  # dropout uses fewer levels on some batches
    rvq.eval()
    x = clusters(512)
    out = rvq(x)
    assert out.indices.shape == (512, 4) and out.counts.shape == (4, 32)
    torch.testing.assert_close(out.quantized, rvq.lookup(out.indices), atol=1e-5, rtol=1e-5)
    errors = [(rvq(x, num_levels=n).quantized - x).pow(2).mean() for n in (1, 2, 4)]
    assert errors[0] > errors[1] > errors[2]  # each level refines the residual
    with pytest.raises(ValueError, match="num_levels"):
        rvq(x, num_levels=5)


@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (3, 4), (7,)])
def test_fsq_round_trip_every_code(levels: tuple[int, ...]) -> None:
    fsq = FSQ(levels)
    ids = torch.arange(fsq.codebook_size)
    codes = fsq.lookup(ids)
    assert codes.abs().max() <= 1
    assert torch.equal(fsq.codes_to_indices(codes), ids)
    z = (torch.randn(2, 10, len(levels)) * 3).requires_grad_()
    out = fsq(z)
    assert torch.equal(fsq.lookup(out.indices), out.quantized.detach())
    out.quantized.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert out.loss == 0 and out.counts.shape == (1, fsq.codebook_size)


def test_fsq_reaches_every_code_and_validates() -> None:
    fsq = FSQ((5, 4))
    assert (fsq(torch.randn(20_000, 2) * 2).counts > 0).all()
    with pytest.raises(ValueError, match="levels"):
        FSQ((1, 4))
    with pytest.raises(ValueError, match="entropy_weight"):
        FSQ((5, 4), entropy_weight=-1.0)
    with pytest.raises(ValueError, match="channels"):
        fsq(torch.randn(3, 3))


def test_fsq_code_probabilities_follow_the_index_order() -> None:
    fsq = FSQ((3, 4, 2), temperature=0.01)
    ids = torch.arange(fsq.codebook_size)
    probs = fsq.code_probabilities(fsq.lookup(ids) * (fsq.levels // 2))  # each code in level units
    assert probs.shape == (24, 24)
    torch.testing.assert_close(probs.sum(-1), torch.ones(24))
    assert torch.equal(probs.argmax(-1), ids)


def test_fsq_entropy_penalty_spreads_bunched_latents_over_the_grid() -> None:
    torch.manual_seed(0)
    fsq = FSQ((5, 5), entropy_weight=1.0)
    z = torch.nn.Parameter(0.1 * torch.randn(512, 2))  # bunched at the centre of the grid
    assert usage_and_perplexity(fsq(z).counts)[0] < 0.4
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        fsq(z).loss.backward()
        opt.step()
    assert usage_and_perplexity(fsq(z).counts)[0] > 0.95
    assert fsq.eval()(z).loss == 0  # a training-only term


def test_usage_and_perplexity() -> None:
    usage, perplexity = usage_and_perplexity(torch.tensor([[5.0, 5.0, 0.0, 0.0]]))
    assert usage == 0.5 and perplexity == pytest.approx(2.0)
