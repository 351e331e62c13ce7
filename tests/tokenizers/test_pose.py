"""Pose tokenizer: round trip within half a bin (property tests), grammar, layout, bad input, save/load."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anytoken.heads import GrammarConstraint
from anytoken.tokenizers import Tokenizer, TokenSpace
from anytoken.tokenizers.binning import UniformBins
from anytoken.tokenizers.pose import COCO_KEYPOINTS, PoseTokenizer


def _poses(seed: int, n: int, k: int = 17, size: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(n, k, 3, generator=g, dtype=torch.float64)
    kp[..., :2] *= size
    kp[..., 2] = torch.randint(0, 3, (n, k), generator=g).double()
    return kp


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    num_bins=st.integers(1, 300),
    num_bins_y=st.one_of(st.none(), st.integers(1, 300)),
    box=st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3), st.floats(0.5, 2e3), st.floats(0.5, 2e3)),
)
def test_round_trip_within_half_a_bin(seed: int, num_bins: int, num_bins_y: int | None, box: tuple) -> None:
    tok = PoseTokenizer(num_bins=num_bins, num_bins_y=num_bins_y)
    x0, y0, w, h = box
    kp = _poses(seed, 4)
    kp[..., 0] = x0 + kp[..., 0] * w  # inside the box, edges included
    kp[..., 1] = y0 + kp[..., 1] * h
    boxes = torch.tensor([box] * 4, dtype=torch.float64)
    ids = tok.encode(kp, boxes)
    assert ids.dtype == torch.long and ids.shape == (4, 51)
    assert int(ids.min()) >= 0 and int(ids.max()) < tok.vocab_size
    out = tok.decode(ids, boxes)
    labelled = kp[..., 2] > 0
    bx, by = tok.error_bound
    err = (out[..., :2].double() - kp[..., :2]).abs()
    slack = 1e-5 * max(abs(x0), abs(y0), w, h)  # float32 decoding
    assert bool((err[..., 0][labelled] <= bx * w + slack).all())
    assert bool((err[..., 1][labelled] <= by * h + slack).all())
    assert torch.equal(out[..., 2], kp[..., 2].float())  # visibility is exact
    assert bool((out[..., :2][~labelled] == 0).all())  # COCO stores unlabelled keypoints as (0, 0)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=50), num_bins=st.integers(1, 1000))
def test_bins_round_trip(values: list[float], num_bins: int) -> None:
    bins = UniformBins(0.0, 1.0, num_bins)
    x = torch.tensor(values, dtype=torch.float64)
    assert float((bins.quantize(x) - x).abs().max()) <= bins.width / 2 + 1e-12


def test_normalised_input_and_reconstruction_error() -> None:
    tok = PoseTokenizer(num_bins=32)
    kp = _poses(0, 10)
    assert tok.reconstruction_error(kp) <= 0.5 / 32 + 1e-7
    two = kp[..., :2]  # [K, 2]: every keypoint visible
    out = tok.decode(tok.encode(two))
    assert bool((out[..., 2] == 2).all())


def test_layout_and_grammar_emit_one_pair_per_keypoint() -> None:
    tok = PoseTokenizer(num_bins=8, num_bins_y=6)
    assert tok.vocab_size == 8 + 6 + 3 and tok.bin_intervals == ((0, 8), (8, 14))
    g = tok.grammar()
    assert g.min_length == g.max_length == 51 and g.steps == (((0, 8),), ((8, 14),), ((14, 17),))
    space = TokenSpace({"pose": tok.vocab_size, "image": 0}, tasks=("pose_estimation",))
    constraint = GrammarConstraint(space, "pose", g)
    allowed = constraint.allowed(torch.arange(53))
    r = space.range("pose")
    assert bool(allowed[0, r.start : r.start + 8].all()) and int(allowed[0].sum()) == 8
    assert int(allowed[1].sum()) == 6 and int(allowed[2].sum()) == 3
    assert not bool(allowed[50, space.end("pose")]) and bool(allowed[51, space.end("pose")])
    assert int(allowed[51].sum()) == 1  # only the end marker after 17 keypoints

    none = PoseTokenizer(num_bins=8, visibility="none")
    assert none.grammar().max_length == 34 and none.vocab_size == 16


def test_custom_skeleton() -> None:
    tok = PoseTokenizer(keypoint_names=["head", "hand"], skeleton=[[0, 1]], num_bins=10)
    out = tok.decode(tok.encode(torch.tensor([[0.11, 0.52, 2.0], [0.99, 0.0, 1.0]])))
    assert out.shape == (2, 3) and torch.allclose(out[:, :2], torch.tensor([[0.15, 0.55], [0.95, 0.05]]))


@pytest.mark.parametrize(
    ("keypoints", "box", "message"),
    [
        (torch.rand(16, 3), None, "expected 17 keypoints"),
        (torch.rand(17, 4), None, r"\[\.\.\., K, 3\]"),
        (torch.tensor([[0.5, 1.5, 2.0]] * 17), None, "outside the box"),
        (torch.tensor([[0.5, math.nan, 2.0]] * 17), None, "finite"),
        (torch.tensor([[0.5, 0.5, 3.0]] * 17), None, "visibility flags"),
        (torch.tensor([[5.0, 5.0, 2.0]] * 17), torch.tensor([0.0, 0.0, 0.0, 10.0]), "positive"),
        (torch.tensor([[5.0, 5.0, 2.0]] * 17), torch.tensor([0.0, 0.0, 10.0]), "box must be"),
        (torch.tensor([[12.0, 5.0, 2.0]] * 17), torch.tensor([0.0, 0.0, 10.0, 10.0]), "outside the box"),
    ],
)
def test_bad_keypoints(keypoints: torch.Tensor, box: torch.Tensor | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PoseTokenizer().encode(keypoints, box)


def test_nan_of_unlabelled_keypoints_is_ignored_and_clip_policy() -> None:
    kp = torch.full((17, 3), 0.5)
    kp[:, 2] = 2.0
    kp[3] = torch.tensor([math.nan, math.nan, 0.0])
    assert PoseTokenizer().encode(kp).shape == (51,)
    kp[4] = torch.tensor([1.7, -0.2, 2.0])
    out = PoseTokenizer(num_bins=10, outside="clip").decode(
        PoseTokenizer(num_bins=10, outside="clip").encode(kp)
    )
    assert torch.allclose(out[4], torch.tensor([0.95, 0.05, 2.0]))
    with pytest.raises(ValueError, match="only labelled"):
        PoseTokenizer(visibility="none").encode(torch.zeros(17, 3))


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (torch.zeros(50, dtype=torch.long), "not a whole number of keypoints"),
        (torch.zeros(54, dtype=torch.long), "wrong keypoint count"),
        (torch.full((51,), 70, dtype=torch.long), "slot 0"),
        (torch.tensor([1.5] * 51), "integers"),
        (torch.full((51,), 500, dtype=torch.long), r"\[0, 131\)"),
    ],
)
def test_bad_ids(ids: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PoseTokenizer().decode(ids)


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="unique"):
        PoseTokenizer(keypoint_names=["a", "a"])
    with pytest.raises(ValueError, match="skeleton edges"):
        PoseTokenizer(keypoint_names=["a", "b"], skeleton=[[0, 2]])
    with pytest.raises(ValueError, match="num_bins"):
        PoseTokenizer(num_bins=0)


def test_save_and_load(tmp_path) -> None:
    tok = PoseTokenizer(num_bins=20, num_bins_y=30, visibility="token")
    tok.save_pretrained(tmp_path / "pose")
    loaded = Tokenizer.from_pretrained(tmp_path / "pose")
    assert isinstance(loaded, PoseTokenizer) and loaded.config() == tok.config()
    assert loaded.keypoint_names == COCO_KEYPOINTS
    kp = _poses(1, 3)
    assert torch.equal(loaded.encode(kp), tok.encode(kp))
