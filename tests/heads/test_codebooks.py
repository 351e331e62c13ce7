"""Parallel codebook heads and the delay pattern: layout round trips, targets, heads, generation."""

from __future__ import annotations

import pytest
import torch

from anytoken.backbone import CausalTransformer, TransformerConfig
from anytoken.heads import DecodingConfig
from anytoken.heads.codebooks import (
    EMPTY,
    IGNORE_INDEX,
    CodebookHeads,
    delay_pattern,
    delay_targets,
    frame_embeddings,
    generate_delayed,
    undo_delay,
)


def test_delay_pattern_round_trip_and_layout() -> None:
    codes = torch.randint(0, 8, (2, 3, 5))
    delayed = delay_pattern(codes)
    assert delayed.shape == (2, 3, 7)
    assert torch.equal(delayed[0, 1, 1:6], codes[0, 1]) and delayed[0, 2, :2].eq(EMPTY).all()
    assert torch.equal(undo_delay(delayed), codes)
    with pytest.raises(ValueError, match="EMPTY"):
        undo_delay(torch.full((3, 7), EMPTY))


def test_delay_targets_mark_the_end_on_level_zero() -> None:
    codes = torch.tensor([[1, 2, 3], [4, 5, 6]])  # K = 2, T = 3
    targets = delay_targets(codes, cardinality=8)  # (L + 1, K) = (5, 2)
    assert targets.tolist() == [[1, IGNORE_INDEX], [2, 4], [3, 5], [8, 6], [IGNORE_INDEX, IGNORE_INDEX]]


def test_frame_embeddings_sum_the_levels_and_skip_empty_cells() -> None:
    table = torch.nn.Embedding(40, 4)
    grid = torch.tensor([[1, EMPTY], [2, 3]])  # (2 positions, K = 2)
    out = frame_embeddings(table, grid, offset=10, cardinality=8)
    torch.testing.assert_close(out[0], table.weight[11])
    torch.testing.assert_close(out[1], table.weight[12] + table.weight[10 + 8 + 3])


def test_heads_shapes_end_class_and_loss() -> None:
    heads = CodebookHeads(16, num_codebooks=3, cardinality=8)
    logits = heads(torch.randn(5, 16))
    assert (
        logits.shape == (5, 3, 9)
        and torch.isinf(logits[:, 1:, 8]).all()
        and torch.isfinite(logits[:, 0]).all()
    )
    targets = delay_targets(torch.randint(0, 8, (3, 4)), 8)  # (7, 3)
    loss, accuracy = heads.loss(torch.randn(7, 16, requires_grad=True), targets)
    loss.backward()
    assert torch.isfinite(loss) and accuracy.shape == (3,) and heads.proj.weight.grad is not None


@pytest.mark.parametrize("strategy", ["greedy", "sample"])
def test_generate_delayed_returns_whole_frames(strategy: str) -> None:
    torch.manual_seed(0)
    model = CausalTransformer(TransformerConfig.from_name("tiny", vocab_size=64)).eval()
    heads = CodebookHeads(64, num_codebooks=3, cardinality=8)
    prompt = model.embed_ids(torch.tensor([[0, 1, 2], [0, 3, 4]]))
    mask = torch.tensor([[False, True, True], [True, True, True]])  # left padding
    out = generate_delayed(
        model,
        heads,
        prompt,
        mask,
        lambda g: frame_embeddings(model.embed_ids, g, 20, 8),
        max_frames=6,
        config=DecodingConfig(strategy),
    )
    assert len(out) == 2 and all(c.shape[0] == 3 and 1 <= c.shape[1] <= 6 for c in out)
    assert all(0 <= int(c.min()) and int(c.max()) < 8 for c in out)
    with pytest.raises(ValueError, match="greedy and sample"):
        generate_delayed(model, heads, prompt, mask, lambda g: g, 6, DecodingConfig("beam"))


def test_generate_delayed_greedy_matches_full_recompute() -> None:
    """The KV-cached steps give the same picks as re-running the whole sequence."""
    torch.manual_seed(1)
    model = CausalTransformer(TransformerConfig.from_name("tiny", vocab_size=64)).eval()
    heads = CodebookHeads(64, num_codebooks=2, cardinality=8)
    embed = lambda g: frame_embeddings(model.embed_ids, g, 20, 8)  # noqa: E731
    prompt = model.embed_ids(torch.tensor([[0, 1, 2]]))
    codes = generate_delayed(model, heads, prompt, torch.ones(1, 3, dtype=torch.bool), embed, max_frames=4)[0]
    grid = delay_pattern(codes).t()  # (L, K)
    with torch.no_grad():
        full = model(inputs_embeds=torch.cat([prompt, embed(grid)[None]], dim=1))  # (1, 3 + L, d)
        picks = heads(full[0, 2:-1]).argmax(-1)  # positions <prompt end>, P_0 .. P_{L-2}
    keep = grid >= 0
    assert torch.equal(picks[keep], grid[keep])
