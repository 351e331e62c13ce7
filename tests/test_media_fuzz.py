"""Every command that reads or writes media, fed hostile and odd-but-valid files (tests/media_cases.py):
each gives a documented result or exits 1 with one line naming the file, never a traceback, never a
partial output, and within a bounded memory."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from media_cases import AUDIO, IMAGES, TABLES, TOKENS, TRAJECTORIES, WRONG_SHAPE, Case, write_case

from anytoken.cli import main
from anytoken.tokenizers import MuLawTokenizer, TableTokenizer, Tokenizer, TrajectoryTokenizer
from anytoken.tokenizers.image_vq import ImageVQTokenizer


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Saved tokenizers of every media kind (untrained: the policy does not depend on training)."""
    root = tmp_path_factory.mktemp("tokenizers")
    table = TableTokenizer.fit(pd.DataFrame({"a": np.linspace(0, 2, 20), "b": ["x", "y"] * 10}))
    made = {"image": ImageVQTokenizer(image_size=32, codebook_size=16, channels=8, encoder_channels=8),
            "audio": MuLawTokenizer(sample_rate=16000), "table": table, "trajectory": TrajectoryTokenizer()}
    for kind, tokenizer in made.items():
        tokenizer.save_pretrained(root / kind)
    return {kind: root / kind for kind in made}


def _run(argv: list[str], expected: str | None, name: str) -> None:
    """``main(argv)`` succeeds (``expected`` None) or exits with one line naming ``name`` and matching it."""
    if expected is None:
        main(argv)
        return
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    message = str(exit_info.value.code)
    assert message.startswith(f"anytoken {argv[0]}: ") and "\n" not in message, message
    assert name in message, f"the message does not name the file: {message}"
    assert __import__("re").search(expected, message), message


def _no_leftovers(folder: Path, *outputs: Path) -> None:
    assert not [p for p in outputs if p.exists()], "a refused input left an output behind"
    assert not [p.name for p in folder.iterdir() if ".tmp" in p.name], "a temporary file was left behind"


def _encode_all(kind: str, cases: dict[str, Case], tokenizer: Path, tmp_path: Path) -> None:
    for name, case in cases.items():
        source, out = write_case(tmp_path, name, case), tmp_path / f"{name}.npy"
        _run(["encode", str(source), "--tokenizer", str(tokenizer), "-o", str(out)], case[1], name)
        if case[1] is None:
            decoded = tmp_path / f"{name}.back{source.suffix}"
            main(["decode", str(out), "--tokenizer", str(tokenizer), "-o", str(decoded)])
            assert decoded.is_file()
        else:
            _no_leftovers(tmp_path, out)


def test_images_through_encode_and_decode(tokenizers: dict[str, Path], tmp_path: Path) -> None:
    _encode_all("image", IMAGES, tokenizers["image"], tmp_path)


def test_audio_through_encode_and_decode(tokenizers: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    _encode_all("audio", AUDIO, tokenizers["audio"], tmp_path)
    warned = capsys.readouterr().err
    for finding in ("silent", "clipped", "outside [-1, 1]: clamped"):
        assert "warning: " in warned and finding in warned


def test_tables_through_encode_and_decode(tokenizers: dict[str, Path], tmp_path: Path) -> None:
    _encode_all("table", TABLES, tokenizers["table"], tmp_path)


def test_trajectories_through_encode_and_decode(tokenizers: dict[str, Path], tmp_path: Path) -> None:
    _encode_all("trajectory", TRAJECTORIES, tokenizers["trajectory"], tmp_path)


@pytest.mark.parametrize("kind", ["image", "audio", "table", "trajectory"])
def test_bad_token_files_through_decode(kind: str, tokenizers: dict[str, Path], tmp_path: Path) -> None:
    suffix = {"image": ".png", "audio": ".wav", "table": ".csv", "trajectory": ".csv"}[kind]
    for name, case in {**TOKENS, "wrong_shape.npy": (WRONG_SHAPE[0], "")}.items():
        if kind == "table" and name in ("negative.npy", "out_of_range.npy"):
            case = (case[0], r"lie in \[0, ")
        source, out = write_case(tmp_path, name, case), tmp_path / f"out{suffix}"
        _run(["decode", str(source), "--tokenizer", str(tokenizers[kind]), "-o", str(out)], case[1], name)
        _no_leftovers(tmp_path, out)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Untrained tiny captioning and VQA releases (what the image policy is checked through)."""
    from anytoken.tasks.captioning import CaptioningModule
    from anytoken.tasks.data.vqa import VQADataModule
    from anytoken.tasks.vqa import VQAModule

    root = tmp_path_factory.mktemp("releases")
    vocab = VQADataModule(num_train=8, num_val=2, num_test=2, num_heldout=2, image_size=32,
                          bpe_vocab_size=270).vocab
    tiny = {"backbone": {"n_layer": 1, "n_head": 2, "d_model": 32, "max_seq_len": 96},
            "image_encoder": {"source": "cnn", "image_size": 32, "cnn_width": 8, "cnn_grid": 4},
            "decoding": {"max_new_tokens": 2}}
    CaptioningModule(vocab, **tiny).export(root / "caption")
    VQAModule(vocab, **tiny).export(root / "vqa")
    return {"caption": root / "caption", "vqa": root / "vqa"}


def test_images_through_caption_and_vqa(releases: dict[str, Path], tmp_path: Path) -> None:
    for name, case in IMAGES.items():
        image = str(write_case(tmp_path, name, case))
        _run(["caption", image, "--ckpt", str(releases["caption"])], case[1], name)
        if name in ("ordinary.png", "truncated.jpg", "huge.png", "strip.png"):  # vqa reads images alike
            _run(["vqa", image, "what color is it?", "--ckpt", str(releases["vqa"])], case[1], name)


def test_the_python_api_gives_the_same_errors(tokenizers: dict[str, Path], tmp_path: Path) -> None:
    from anytoken.tokenizers import Tokenizer

    for kind, cases in (("image", IMAGES), ("audio", AUDIO), ("table", TABLES), ("trajectory", TRAJECTORIES)):
        tokenizer = Tokenizer.from_pretrained(tokenizers[kind])
        for name, (write, expected) in cases.items():
            if expected is not None:
                with pytest.raises(ValueError, match=expected):
                    tokenizer.encode_file(write_case(tmp_path, f"{kind}_{name}", (write, expected)))


def test_round_trips_keep_the_data(tokenizers: dict[str, Path], tmp_path: Path) -> None:
    """A trajectory keeps its scene, agents, start positions and steps; a zero-row table stays one."""
    scene = write_case(tmp_path, "scene.csv", TRAJECTORIES["scene.csv"])
    main(["encode", str(scene), "--tokenizer", str(tokenizers["trajectory"]), "-o", str(tmp_path / "s.npy")])
    assert json.loads((tmp_path / "s.npy.json").read_text())["agents"] == ["a", "b"]
    main(["decode", str(tmp_path / "s.npy"), "--tokenizer", str(tokenizers["trajectory"]),
          "-o", str(tmp_path / "s.csv")])
    before, after = pd.read_csv(scene), pd.read_csv(tmp_path / "s.csv")
    assert after[["scene", "agent"]].astype(str).equals(before[["scene", "agent"]].astype(str))
    assert np.array_equal(after["t"].to_numpy(float), before["t"].to_numpy(float))
    assert np.abs(after[["x", "y"]].to_numpy() - before[["x", "y"]].to_numpy()).max() < 0.05
    for array in (np.zeros((0, 4), np.int64), np.zeros(0, np.int64)):
        np.save(tmp_path / "none.npy", array)
        main(["decode", str(tmp_path / "none.npy"), "--tokenizer", str(tokenizers["table"]),
              "-o", str(tmp_path / "none.csv")])
        assert (tmp_path / "none.csv").read_text() == "a,b\n"
        main(["encode", str(tmp_path / "none.csv"), "--tokenizer", str(tokenizers["table"]),
              "-o", str(tmp_path / "again.npy")])
        assert np.load(tmp_path / "again.npy").shape[0] == 0


def test_outputs_follow_the_suffix_the_umask_and_refuse_odd_targets(tokenizers: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    from PIL import Image

    ids = tmp_path / "ids.npy"
    main(["encode", str(write_case(tmp_path, "in.png", IMAGES["ordinary.png"])),
          "--tokenizer", str(tokenizers["image"]), "-o", str(ids)])
    for suffix, fmt in ((".jpg", "JPEG"), (".webp", "WEBP"), (".png", "PNG")):
        main(["decode", str(ids), "--tokenizer", str(tokenizers["image"]),
              "-o", str(tmp_path / f"r{suffix}")])
        assert Image.open(tmp_path / f"r{suffix}").format == fmt
    old = os.umask(0o027)
    try:
        main(["decode", str(ids), "--tokenizer", str(tokenizers["image"]), "-o", str(tmp_path / "u.png")])
        assert stat.S_IMODE((tmp_path / "u.png").stat().st_mode) == 0o640
        (tmp_path / "kept.png").touch(mode=0o644)
        os.chmod(tmp_path / "kept.png", 0o644)
        main(["decode", str(ids), "--tokenizer", str(tokenizers["image"]), "-o", str(tmp_path / "kept.png")])
        assert stat.S_IMODE((tmp_path / "kept.png").stat().st_mode) == 0o644  # a replaced file keeps its mode
        MuLawTokenizer().save_pretrained(tmp_path / "tok")
        assert stat.S_IMODE((tmp_path / "tok").stat().st_mode) == 0o750
        Tokenizer.from_pretrained(tokenizers["image"]).save_pretrained(tmp_path / "vq")  # safetensors: 0600
        assert {stat.S_IMODE(f.stat().st_mode) for f in (tmp_path / "vq").iterdir()} == {0o640}
    finally:
        os.umask(old)
    (tmp_path / "target.png").write_bytes(b"keep")
    (tmp_path / "link.png").symlink_to(tmp_path / "target.png")
    (tmp_path / "folder").mkdir()
    for target, expected in ((tmp_path / "link.png", "symbolic link"),
                             (tmp_path / "folder", "is a directory"),
                             (Path("/dev/null"), "not a regular file"), (tmp_path / "x.mp4", "writes .png")):
        _run(["decode", str(ids), "--tokenizer", str(tokenizers["image"]), "-o", str(target)], expected,
             str(target))
    assert (tmp_path / "target.png").read_bytes() == b"keep" and Path("/dev/null").is_char_device()
    _run(["decode", str(ids), "--tokenizer", str(tokenizers["audio"]), "-o", str(tmp_path / "a.m4a")],
         r"writes .wav.*not \.m4a", "a.m4a")
    _run(["encode", str(tmp_path / "folder"), "--tokenizer", str(tokenizers["trajectory"]),
          "-o", str(tmp_path / "t.npy")], "is a directory", "folder")


def test_sigterm_during_a_write_leaves_no_temporary_file(tokenizers: dict[str, Path], tmp_path: Path) -> None:
    """The write is made slow; SIGTERM arrives during it; the process exits 143 and leaves nothing."""
    np.save(tmp_path / "ids.npy", np.zeros((1, 8000), np.int64))
    slow = ("import sys, time, anytoken.tokenizers.audio_io as io; write = io.write_audio\n"
            "def slow(*a):\n    write(*a); print('writing', flush=True); time.sleep(30)\n"
            "io.write_audio = slow\nfrom anytoken.cli import main\n"
            f"main(['decode', {str(tmp_path / 'ids.npy')!r}, '--tokenizer', {str(tokenizers['audio'])!r}, "
            f"'-o', {str(tmp_path / 'out.wav')!r}])")
    proc = subprocess.Popen([sys.executable, "-c", slow], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"writing"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM and b"Traceback" not in proc.stderr.read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.npy"]


def test_training_settings_and_configs_fail_in_one_line(tmp_path: Path, repo_root: Path) -> None:
    config = str(repo_root / "configs/caption_scenes.yaml")
    with pytest.raises(SystemExit, match=r"^anytoken fit: `max_steps` must be a non-negative integer"):
        main(["fit", "--config", config, "--trainer.max_steps", "-5"])
    (tmp_path / "latin.yaml").write_bytes("trainer:\n  max_steps: 5 # caf\xe9\n".encode("latin-1"))
    with pytest.raises(SystemExit, match=r"^anytoken fit: .*latin.yaml: the config is not UTF-8 text"):
        main(["fit", "--config", config, "--config", str(tmp_path / "latin.yaml")])


MEMORY_CASES = {"rate8001.wav": "audio", "rate44101.wav": "audio", "rate1.wav": "audio", "strip.png": "image",
                "huge.jpg": "image", "huge.png": "image", "long.wav": "audio"}
BASELINE = {"audio": "ordinary.wav", "image": "ordinary.png"}
RSS_BOUND_MB = 300


def test_peak_memory_of_odd_inputs_stays_near_an_ordinary_file(tokenizers: dict[str, Path],
                                                               tmp_path: Path) -> None:
    """One process imports anytoken once; each command runs in a fork of it, whose peak RSS counts from
    the fork; each odd input's peak stays within RSS_BOUND_MB of an ordinary file of its kind."""
    cases = {**AUDIO, **IMAGES}
    argv = {}
    for name in [*BASELINE.values(), *MEMORY_CASES]:
        kind = MEMORY_CASES.get(name) or next(k for k, v in BASELINE.items() if v == name)
        argv[name] = ["encode", str(write_case(tmp_path, name, cases[name])), "--tokenizer",
                      str(tokenizers[kind]), "-o", str(tmp_path / f"{name}.npy")]
    script = (
        "import json, os, resource, sys, torch\nfrom anytoken.cli import main\n"
        "torch.set_num_threads(1)  # no OpenMP pool to break in the forks\n"
        f"runs = json.loads({json.dumps(json.dumps(argv))})\n"
        "main(runs['ordinary.wav']); main(runs['ordinary.png'])  # warm: every lazy import done\n"
        "peaks = {}\n"
        "for name, argv in runs.items():\n"
        "    r, w = os.pipe(); pid = os.fork()\n"
        "    if pid == 0:\n"
        "        try: main(argv)\n"
        "        except SystemExit: pass\n"
        "        os.write(w, str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).encode()); os._exit(0)\n"
        "    os.waitpid(pid, 0); os.close(w); peaks[name] = int(os.read(r, 64)) / 1024\n"
        "print(json.dumps(peaks))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    peaks = json.loads(out.stdout.strip().splitlines()[-1])
    for name, kind in MEMORY_CASES.items():
        assert peaks[name] - peaks[BASELINE[kind]] < RSS_BOUND_MB, (name, peaks)
