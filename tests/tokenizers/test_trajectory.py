"""Trajectory tokenizer: the stated worst-case bound holds (property tests and traja's real track), grammar,
CSV format, bad input, save/load and the ``anytoken encode|decode`` round trip."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anytoken.cli import main
from anytoken.tokenizers import Tokenizer
from anytoken.tokenizers.trajectory import MotionState, TrajectoryTokenizer
from anytoken.tokenizers.trajectory_csv import (
    Track,
    read_trajectory_csv,
    scene_positions,
    write_trajectory_csv,
)


def _random_motion(seed: int, agents: int, steps: int, limit: float, action: str) -> torch.Tensor:
    """Positions ``[A, T, 2]`` whose every true action (per axis) is at most ``limit``."""
    g = torch.Generator().manual_seed(seed)
    actions = (torch.rand(agents, steps - 1, 2, generator=g, dtype=torch.float64) * 2 - 1) * limit
    start = torch.randn(agents, 1, 2, generator=g, dtype=torch.float64) * 50
    velocity = actions if action == "velocity" else actions.cumsum(1)  # from rest
    return torch.cat([start, start + velocity.cumsum(1)], dim=1)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    num_bins=st.integers(5, 80),
    max_delta=st.floats(0.05, 20.0),
    action=st.sampled_from(["velocity", "acceleration"]),
    agents=st.integers(1, 4),
    steps=st.integers(2, 40),
)
def test_bound_holds_for_motion_within_the_grid(seed, num_bins, max_delta, action, agents, steps) -> None:
    tok = TrajectoryTokenizer(num_bins=num_bins, max_delta=max_delta, action=action)
    if tok.max_action <= 0:
        return  # grids this coarse guarantee nothing; the bound is stated for max_action > 0
    x = _random_motion(seed, agents, steps, tok.max_action, action)
    assert tok.within_bound(x)
    ids = tok.encode(x)
    assert ids.dtype == torch.long and ids.shape == (2 * agents * (steps - 1),)
    assert int(ids.min()) >= 0 and int(ids.max()) < tok.vocab_size
    out = tok.decode(ids, MotionState.at_rest(x[:, 0]))
    assert out.shape == x.shape
    assert float((out - x).abs().max()) <= tok.error_bound * (1 + 1e-9) + 1e-9 * float(x.abs().max())


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), action=st.sampled_from(["velocity", "acceleration"]))
def test_explicit_start_state_and_continuation(seed, action) -> None:
    """A future encoded from the reconstructed end of its history decodes back within the bound."""
    tok = TrajectoryTokenizer(num_bins=21, max_delta=2.0, action=action)
    x = _random_motion(seed, 2, 20, tok.max_action / 2, action)
    history = tok.decode(tok.encode(x[:, :8]), MotionState.at_rest(x[:, 0]))
    state = MotionState.from_path(history)
    future = tok.decode(tok.encode(x[:, 8:], state), state)[:, 1:]
    assert float((future - x[:, 8:]).abs().max()) <= tok.error_bound + 1e-9


def test_large_actions_saturate_without_failing() -> None:
    tok = TrajectoryTokenizer(num_bins=9, max_delta=0.5, action="velocity")
    x = torch.tensor(
        [[0.0, 0.0], [3.0, 0.0], [3.0, 0.0], [3.0, 0.0], [3.0, 0.0], [3.0, 0.0], [3.0, 0.0], [3.0, 0.0]]
    )
    assert not tok.within_bound(x)
    out = tok.decode(tok.encode(x), MotionState.at_rest(x[0]))
    assert float((out[-1] - x[-1]).abs().max()) <= tok.error_bound  # the closed loop catches up


def test_traja_real_track_within_the_bound() -> None:
    """traja's MIT-licensed test track (115 rows): the real-data check of the stated bound."""
    spec = importlib.util.find_spec("traja")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("traja is not installed (pip install traja): its test track is the real-data fixture")
    path = Path(spec.submodule_search_locations[0]) / "tests" / "data" / "3527.csv"
    assert path.is_file(), f"traja is installed but {path} is missing"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 115
    t = np.array([float(r["Time"]) for r in rows])
    assert np.allclose(np.diff(t), 0.02)  # uniform steps, as motion tokens assume
    x = torch.tensor([[float(r["x"]), float(r["y"])] for r in rows], dtype=torch.float64)
    for action, max_delta in (("velocity", 8.0), ("acceleration", 8.0)):
        tok = TrajectoryTokenizer(num_bins=65, max_delta=max_delta, action=action)
        assert tok.within_bound(x), action
        assert tok.reconstruction_error(x) <= tok.error_bound


def test_grammar_whole_steps() -> None:
    tok = TrajectoryTokenizer(num_bins=5)
    assert tok.vocab_size == 10 and tok.bin_intervals == ((0, 5), (5, 10))
    joint = tok.grammar(num_agents=3, num_steps=4)
    assert joint.min_length == joint.max_length == 24 and joint.steps == (((0, 5),), ((5, 10),))
    open_ended = tok.grammar()
    assert open_ended.min_length == 2 and open_ended.max_length is None
    with pytest.raises(ValueError, match="num_agents"):
        tok.grammar(num_agents=0)


@pytest.mark.parametrize(
    ("positions", "message"),
    [
        (torch.zeros(0, 2), "at least one position"),
        (torch.zeros(1, 2), "at least 2 positions"),
        (torch.zeros(3, 3), r"\[T, 2\]"),
        (torch.tensor([[0.0, 0.0], [math.nan, 1.0]]), "finite"),
    ],
)
def test_bad_positions(positions: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrajectoryTokenizer().encode(positions)


def test_bad_ids_and_states() -> None:
    tok = TrajectoryTokenizer(num_bins=5)
    with pytest.raises(ValueError, match="whole steps"):
        tok.decode(torch.tensor([0, 5, 1]))
    with pytest.raises(ValueError, match="whole steps"):
        tok.decode(torch.tensor([0, 5, 1, 6]), num_agents=3)
    with pytest.raises(ValueError, match="alternate"):
        tok.decode(torch.tensor([5, 0]))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        tok.decode(torch.tensor([0, 12]))
    with pytest.raises(ValueError, match="2 agents"):
        tok.decode(torch.tensor([0, 5]), MotionState.at_rest(torch.zeros(2, 2)), num_agents=1)
    with pytest.raises(ValueError, match="start state holds"):
        tok.encode(torch.zeros(3, 4, 2), MotionState.at_rest(torch.zeros(2, 2)))
    with pytest.raises(ValueError, match="finite"):
        MotionState.at_rest(torch.tensor([math.nan, 0.0]))
    with pytest.raises(ValueError, match="max_delta"):
        TrajectoryTokenizer(max_delta=0)
    with pytest.raises(ValueError, match="action"):
        TrajectoryTokenizer(action="jerk")


def test_csv_round_trip_and_errors(tmp_path) -> None:
    tracks = [
        Track("s1", "a", [0.0, 0.1, 0.2], [[0.1, 1 / 3], [2.0, 3.0], [1e-17, -5.5]]),
        Track("s1", "b", [0.0, 0.1, 0.2], [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]),
        Track("s2", "a", [5.0], [[0.0, 0.0]]),
    ]
    path = tmp_path / "tracks.csv"
    write_trajectory_csv(path, tracks)
    assert path.read_text().splitlines()[0] == "scene,agent,t,x,y"
    back = read_trajectory_csv(path)
    assert back == tracks  # exact floats
    t, positions = scene_positions(back[:2], uniform=True)
    assert positions.shape == (2, 3, 2) and np.allclose(t, [0.0, 0.1, 0.2])

    def bad(text: str, message: str) -> None:
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_trajectory_csv(path)

    bad("scene,agent,t,x\n", "missing")
    bad("scene,agent,t,x,y\ns,a,0,1,oops\n", "must be numbers")
    bad("scene,agent,t,x,y\ns,a,0,1,nan\n", "finite")
    bad("scene,agent,t,x,y\ns,a,1,0,0\ns,a,0,1,1\n", "strictly increasing")
    bad("scene,agent,t,x,y\ns,a,1,0,0\ns,a,1,1,1\n", "strictly increasing")
    with pytest.raises(ValueError, match="equally spaced"):
        scene_positions([Track("s", "a", [0.0, 1.0, 3.0], np.zeros((3, 2)))], uniform=True)
    with pytest.raises(ValueError, match="other timestamps"):
        scene_positions(
            [Track("s", "a", [0.0, 1.0], np.zeros((2, 2))), Track("s", "b", [0.0, 2.0], np.zeros((2, 2)))]
        )


def test_save_load_and_cli_round_trip(tmp_path, capsys) -> None:
    tok = TrajectoryTokenizer(num_bins=41, max_delta=2.0, action="velocity")
    tok.save_pretrained(tmp_path / "tok")
    loaded = Tokenizer.from_pretrained(tmp_path / "tok")
    assert isinstance(loaded, TrajectoryTokenizer) and loaded.config() == tok.config()
    x = _random_motion(3, 2, 12, tok.max_action, "velocity").numpy()
    x = x - x[:, :1]  # the CLI decodes from rest at the origin: start the scene there
    write_trajectory_csv(
        tmp_path / "in.csv", [Track("0", str(a), np.arange(12) * 0.5, x[a]) for a in range(2)]
    )
    main(
        [
            "encode",
            str(tmp_path / "in.csv"),
            "--tokenizer",
            str(tmp_path / "tok"),
            "-o",
            str(tmp_path / "ids.npy"),
        ]
    )
    ids = np.load(tmp_path / "ids.npy")
    assert ids.shape == (2 * 2 * 11,)
    with pytest.raises(SystemExit, match="one scene"):
        write_trajectory_csv(
            tmp_path / "two.csv",
            [Track("0", "a", [0.0, 1.0], x[0, :2]), Track("1", "a", [0.0, 1.0], x[1, :2])],
        )
        main(
            [
                "encode",
                str(tmp_path / "two.csv"),
                "--tokenizer",
                str(tmp_path / "tok"),
                "-o",
                str(tmp_path / "x.npy"),
            ]
        )
    # decoding ids of two agents needs the agent count: the CLI decodes one agent, so decode in Python
    out = loaded.decode(torch.from_numpy(ids), num_agents=2)
    assert float(np.abs(out.numpy() - x).max()) <= tok.error_bound
    main(
        [
            "encode",
            str(tmp_path / "in.csv"),
            "--tokenizer",
            str(tmp_path / "tok"),
            "-o",
            str(tmp_path / "ids.npy"),
        ]
    )
    single = tok.encode(torch.from_numpy(x[0]))
    np.save(tmp_path / "one.npy", single.numpy())
    main(
        [
            "decode",
            str(tmp_path / "one.npy"),
            "--tokenizer",
            str(tmp_path / "tok"),
            "-o",
            str(tmp_path / "out.csv"),
        ]
    )
    (track,) = read_trajectory_csv(tmp_path / "out.csv")
    assert np.abs(track.xy - x[0]).max() <= tok.error_bound
