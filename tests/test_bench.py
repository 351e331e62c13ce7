"""``anytoken bench`` on tiny media with tiny tokenizers: the tables' columns, the JSON, missing peers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from anytoken.bench.report import COLUMNS
from anytoken.cli import main
from anytoken.tokenizers import AudioCodecTokenizer, ImageVQTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def media(tmp_path):
    """Two 24 x 24 pictures and two 0.6-s voiced clips (16 kHz), tiny image and audio tokenizers."""
    g = torch.Generator().manual_seed(0)
    (tmp_path / "photos").mkdir()
    for i in range(2):
        low = torch.rand(1, 3, 4, 4, generator=g)
        image = torch.nn.functional.interpolate(low, size=24, mode="bilinear")[0]
        Image.fromarray((image.permute(1, 2, 0) * 255).byte().numpy()).save(tmp_path / "photos" / f"{i}.png")
    import soundfile as sf

    (tmp_path / "speech").mkdir()
    t = torch.arange(9600) / 16000
    for i in range(2):  # harmonics of a 120/150 Hz voice, amplitude-modulated like syllables
        wave = sum(torch.sin(2 * math.pi * (120 + 30 * i) * k * t) / k for k in range(1, 8))
        wave = 0.2 * wave * (0.6 + 0.4 * torch.sin(20 * t))
        sf.write(tmp_path / "speech" / f"{i}.wav", wave.numpy(), 16000)
    torch.manual_seed(0)
    ImageVQTokenizer(image_size=16, downsample=4, channels=8, encoder_channels=8, channel_mult=[1, 1],
                     codebook_size=32, latent_dim=4).save_pretrained(tmp_path / "image_tok")
    AudioCodecTokenizer(sample_rate=8000, strides=[4, 5], encoder_channels=4, decoder_channels=16,
                        dilations=[1], activation="elu", latent_dim=8, codebook_size=16, num_quantizers=3,
                        loss_scales=[64, 128]).save_pretrained(tmp_path / "audio_tok")
    return tmp_path


def _bench(tmp_path, capsys, *args: str) -> tuple[str, dict]:
    main(["bench", *args, "--repeats", "1", "--json", str(tmp_path / "out.json")])
    return capsys.readouterr().out, json.loads((tmp_path / "out.json").read_text())


def _header(kind: str, printed: str) -> list[str]:
    lines = printed.splitlines()
    return [h.strip() for h in lines[lines.index(f"{kind}:") + 2].strip("|").split("|")]


def test_image_and_audio_tables_with_their_peers(media, capsys):
    printed, report = _bench(media, capsys, "--tokenizer", str(media / "image_tok"), "--tokenizer",
                             str(media / "audio_tok"), str(media / "photos"), str(media / "speech"),
                             "--levels", "1", "3")
    assert _header("image", printed) == ["set", "system", "tokens/image", "bpp", "PSNR dB", "SSIM", "usage",
                                         "perplexity", "encode images/s", "decode images/s"]
    assert _header("audio", printed) == ["set", "system", "kbps", "tokens/s", "SI-SNR dB", "mel dist", "PESQ",
                                         "STOI", "usage", "x real time"]
    images, audio = report["tables"]["image"], report["tables"]["audio"]
    assert report["tables"]["image"]["columns"] == [c.key for c in COLUMNS["image"]]
    mine, jpeg, webp = images["rows"]
    assert mine["set"] == "photos" and mine["tokens_per_item"] == 16
    assert mine["bits_per_pixel"] == pytest.approx(16 * 5 / 256)  # 16 tokens of 5 bits on 16 x 16 pixels
    assert 0 < mine["codebook_usage"] <= 1 and mine["encode_per_s"] > 0 and math.isfinite(mine["psnr"])
    assert [jpeg["system"], webp["system"]] == ["JPEG (target 0.312 bpp)", "WebP (target 0.312 bpp)"]
    assert all(r["target_bpp"] == mine["bits_per_pixel"] and r["psnr"] > 0 for r in (jpeg, webp))
    systems = [r["system"] for r in audio["rows"]]
    assert systems[:2] == [f"{media.name}/audio_tok (1 levels)", f"{media.name}/audio_tok (3 levels)"]
    assert audio["rows"][0]["kbps"] == pytest.approx(1.6) and audio["rows"][1]["kbps"] == pytest.approx(4.8)
    # one Opus row (6 kbps is its floor), Codec2 at the nearest modes, one mu-law row (duplicates dropped)
    assert systems[2:] == ["Opus 6 kbps", "Codec2 1600", "Codec2 3200", "mu-law 8 bit"]
    mulaw = audio["rows"][-1]
    assert mulaw["si_snr_db"] > 30 and mulaw["kbps"] == 64  # 8 bits at the codec's 8 kHz
    for row in audio["rows"]:
        assert "missing" in row or {"pesq", "stoi", "mel_distance"} <= set(row)
    assert report["machine"]["cpus"] >= 1 and "load_average_1min" in report["machine"]


def test_a_missing_peer_is_reported_as_missing(media, capsys, monkeypatch, tmp_path):
    empty = tmp_path / "no_tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no opusenc, no c2enc
    monkeypatch.setattr("anytoken.bench.image_peers.features.check", lambda feature: feature != "webp")
    real_find_spec = __import__("importlib.util").util.find_spec
    monkeypatch.setattr("anytoken.bench.audio.importlib.util.find_spec",
                        lambda name: None if name == "pesq" else real_find_spec(name))
    printed, report = _bench(media, capsys, "--tokenizer", str(media / "image_tok"), "--tokenizer",
                             str(media / "audio_tok"), str(media / "photos"), str(media / "speech"))
    rows = {r["system"]: r for r in report["tables"]["audio"]["rows"]}
    assert rows["Opus 6 kbps"]["missing"] == {"peer": "opusenc and opusdec not on PATH (apt-get install "
                                                      "opus-tools)"}
    assert "missing" in rows["Codec2 3200"] and "si_snr_db" not in rows["Codec2 3200"]
    assert "| speech | Opus 6 kbps | 6.00 | - | - |" in printed
    assert "speech / Opus 6 kbps: missing: opusenc and opusdec not on PATH" in printed
    assert rows["mu-law 8 bit"]["missing"] == {"pesq": "pip install pesq"} and "stoi" in rows["mu-law 8 bit"]
    mulaw_line = next(line for line in printed.splitlines() if "mu-law" in line)
    assert mulaw_line.split("|")[7].strip() == "missing"  # the PESQ cell
    webp = report["tables"]["image"]["rows"][2]
    assert webp["system"] == "WebP (target 0.312 bpp)" and "missing" in webp and "psnr" not in webp


def test_pose_trajectory_table_and_text(tmp_path, capsys, bpe):
    from anytoken.tasks.data.formats.coco_keypoints import CocoKeypoints, write_coco_keypoints
    from anytoken.tokenizers.trajectory_csv import Track, write_trajectory_csv

    rng = np.random.default_rng(0)
    for kind in ("poses", "tracks", "tables", "text"):
        (tmp_path / kind).mkdir()
    keypoints = rng.uniform(0, 1, (5, 17, 3)) * [640, 480, 0] + [0, 0, 2]
    write_coco_keypoints(tmp_path / "poses" / "people.json", CocoKeypoints(
        images={1: {"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}},
        annotations=[{"id": i, "image_id": 1, "keypoints": k, "bbox": [0, 0, 640, 480]}
                     for i, k in enumerate(keypoints)],
        keypoint_names=tuple(f"k{i}" for i in range(17))))
    walk = np.cumsum(rng.uniform(-0.4, 0.4, (30, 2)), axis=0)
    write_trajectory_csv(tmp_path / "tracks" / "walk.csv", [Track("s", "a", np.arange(30.0), walk)])
    pd.DataFrame({"x": rng.normal(size=40), "kind": rng.choice(["a", "b"], 40)}).to_csv(
        tmp_path / "tables" / "small.csv", index=False)
    (tmp_path / "text" / "captions.txt").write_text("a small red square\na large blue circle\n")
    bpe.save_pretrained(tmp_path / "bpe")
    printed, report = _bench(
        tmp_path, capsys, "--tokenizer", 'pose:{"num_bins": 16}', "--tokenizer",
        'trajectory:{"num_bins": 17, "max_delta": 1.0}', "--tokenizer", 'table:{"n_bins": 8}',
        "--tokenizer", str(tmp_path / "bpe"),
        *(str(tmp_path / kind) for kind in ("poses", "tracks", "tables", "text")))
    pose, = report["tables"]["pose"]["rows"]
    assert pose["items"] == 5 and pose["tokens_per_item"] == 51 and pose["bound"] == pytest.approx(1 / 32)
    assert pose["within_bound"] and 0 < pose["mean_error"] < pose["max_error"] <= pose["bound"] + 1e-9
    track, = report["tables"]["trajectory"]["rows"]
    assert track["items"] == 29 and track["within_bound"] and track["actions_within_max_action"]
    assert track["max_error"] <= track["bound"] + 1e-9 and track["bound"] == pytest.approx(1 / 17)
    table, = report["tables"]["table"]["rows"]
    assert table["set"] == "tables/small" and set(table["column_errors"]) == {"x", "kind"}
    assert table["column_errors"]["kind"] == 0.0 and table["worst_column"] == "x" and table["items"] == 40
    text, = report["tables"]["text"]["rows"]
    assert text["exact"] == 1.0 and text["items"] == 37 and text["tokens"] > 0
    for kind in ("pose", "trajectory", "table", "text"):
        assert _header(kind, printed)[:2] == ["set", "system"]
        assert report["tables"][kind]["columns"] == [c.key for c in COLUMNS[kind]]


def test_bad_arguments_give_one_line(media, tmp_path):
    image = str(media / "image_tok")
    (tmp_path / "notes.md").write_text("not media")
    cases = {
        ("--tokenizer", "no_such_tokenizer", str(media / "photos")): "neither a directory nor a registered",
        ("--tokenizer", 'pose:{"num_bins"', str(media / "photos")): "is not JSON",
        ("--tokenizer", image, str(media / "speech")): "no image files",
        ("--tokenizer", image, str(media / "photos"), str(tmp_path / "notes.md")): "no tokenizer given reads",
        ("--tokenizer", image, str(tmp_path / "absent")): "media not found",
    }
    for args, message in cases.items():
        with pytest.raises(SystemExit) as info:
            main(["bench", *args, "--json", str(tmp_path / "x.json")])
        assert str(info.value).startswith("anytoken bench: ") and message in str(info.value)
        assert "\n" not in str(info.value)
    assert not (tmp_path / "x.json").exists()
