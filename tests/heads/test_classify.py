"""The classification head: pooling over any padding side, shapes, gradients and bad input."""

from __future__ import annotations

import pytest
import torch

from anytoken.heads import ClassifyHead
from anytoken.heads.classify import pool


def test_last_pooling_takes_the_last_valid_position_with_left_or_right_padding() -> None:
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float).view(2, 4, 3)
    right = torch.tensor([[True, True, False, False], [True, True, True, True]])
    left = torch.tensor([[False, False, True, True], [True, True, True, True]])
    torch.testing.assert_close(pool(hidden, right, "last"), torch.stack([hidden[0, 1], hidden[1, 3]]))
    torch.testing.assert_close(pool(hidden, left, "last"), torch.stack([hidden[0, 3], hidden[1, 3]]))
    torch.testing.assert_close(pool(hidden, None, "last"), hidden[:, -1])


def test_mean_pooling_ignores_padding() -> None:
    hidden = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 1, 1]], dtype=torch.bool)
    expected = torch.stack([hidden[0, :2].mean(0), hidden[1].mean(0), hidden[2, 3:].mean(0)])
    torch.testing.assert_close(pool(hidden, mask, "mean"), expected)
    padded = hidden.clone()
    padded[~mask] = 1e6  # values under padding never leak in
    torch.testing.assert_close(pool(padded, mask, "mean"), expected)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_head_gives_class_logits_and_every_parameter_a_gradient(pooling: str) -> None:
    head = ClassifyHead(16, num_classes=7, pooling=pooling, hidden=24)
    hidden = torch.randn(4, 6, 16, requires_grad=True)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1, 4:] = False
    logits = head(hidden, mask)
    assert logits.shape == (4, 7) and torch.isfinite(logits).all()
    logits.logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert hidden.grad[1, 4:].abs().sum() == 0  # padding gets no gradient


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 classes"):
        ClassifyHead(8, num_classes=1)
    with pytest.raises(ValueError, match="pooling"):
        ClassifyHead(8, num_classes=3, pooling="max")
    with pytest.raises(ValueError, match=r"\[B, T, d\]"):
        pool(torch.randn(2, 8), None)
    with pytest.raises(ValueError, match="mask"):
        pool(torch.randn(2, 3, 8), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one True"):
        pool(torch.randn(2, 3, 8), torch.tensor([[True, False, False], [False, False, False]]))
