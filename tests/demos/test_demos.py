"""The Gradio demos, launched on 127.0.0.1 with tiny untrained models: through gradio_client, and once in
a real headless browser (Debian's chromium) taking a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

from anytoken.cli import load_demo  # noqa: E402
from anytoken.tasks.captioning import CaptioningModule  # noqa: E402
from anytoken.tasks.data.synthetic.scenes import make_scenes  # noqa: E402
from anytoken.tasks.vqa import VQAModule  # noqa: E402
from anytoken.tokenizers import BPETokenizer, TokenSpace  # noqa: E402

TINY = {
    "backbone": {"n_layer": 1, "n_head": 2, "d_model": 32, "max_seq_len": 96},
    "image_encoder": {"source": "cnn", "image_size": 32, "cnn_width": 8, "cnn_grid": 4},
    "decoding": {"max_new_tokens": 6},
}


def _vocab() -> dict:
    scenes = make_scenes("train", 200)
    corpus = [s.caption() for s in scenes] + [qa.question for s in scenes for qa in s.questions()]
    bpe = BPETokenizer.train(corpus, vocab_size=280)
    space = TokenSpace({"text": bpe.vocab_size, "image": 0}, tasks=("caption", "vqa"))
    answers = ["yes", "no", "red"]
    return {"token_space": space.to_dict(), "tokenizers": {"text": bpe.spec()}, "answers": answers}


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("releases")
    vocab = _vocab()
    return {
        "captioning": CaptioningModule(vocab, **TINY).export(root / "caption"),
        "vqa": VQAModule(vocab, head="generate", **TINY).export(root / "vqa"),
        "vqa_classify": VQAModule(vocab, head="classify", **TINY).export(root / "vqa_classify"),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("uploads")
    make_scenes("test", 1)[0].render(64).save(root / "scene.png")
    (root / "notes.png").write_text("this is text, not an image")
    return {"image": str(root / "scene.png"), "not_image": str(root / "notes.png")}


def _serve(app):  # noqa: ANN001, ANN202 - a gr.Blocks -> (client, url)
    from demos.widgets import launch  # importable once load_demo has registered the demos package

    url = launch(app, block=False)
    return Client(url, verbose=False, analytics_enabled=False, download_files=False), url


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one thread is faster, and on a shared CPU far faster (no OpenMP barrier stalls)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


DECODING = ("greedy", 2, 1.0, 0, 1.0, 6)


def test_captioning_app_captions_an_upload_and_explains_bad_input(releases, files) -> None:
    app = load_demo("captioning").build_app(ckpt=releases["captioning"], num_examples=2)
    client, _ = _serve(app)
    try:
        _, caption, message = client.predict(handle_file(files["image"]), *DECODING, api_name="/caption")
        assert isinstance(caption, str) and caption.strip() and "Captioned in" in message
        _, caption, message = client.predict(handle_file(files["image"]), "beam", 2, 1.0, 0, 1.0, 4,
                                             api_name="/caption")
        assert caption.strip()
        _, caption, message = client.predict(handle_file(files["not_image"]), *DECODING, api_name="/caption")
        assert caption == "" and "Not an image file" in message and "notes.png" in message
        _, caption, message = client.predict(None, *DECODING, api_name="/caption")
        assert caption == "" and "Upload an image" in message
    finally:
        app.close()


@pytest.mark.parametrize("which", ["vqa", "vqa_classify"])
def test_vqa_app_answers_with_both_heads(releases, files, which: str) -> None:
    app = load_demo("vqa").build_app(ckpt=releases[which], num_examples=2)
    client, _ = _serve(app)
    try:
        image = handle_file(files["image"])
        _, answer, message = client.predict(image, "what color is the circle?", *DECODING, api_name="/answer")
        assert answer.strip() and "Answered in" in message
        if which == "vqa_classify":
            assert answer in {"yes", "no", "red"}
        text = handle_file(files["not_image"])
        _, answer, message = client.predict(text, "what?", *DECODING, api_name="/answer")
        assert answer == "" and "Not an image file" in message
    finally:
        app.close()


def test_apps_without_a_checkpoint_say_how_to_train_one(tmp_path: Path, files) -> None:
    app = load_demo("captioning").build_app(ckpt=tmp_path / "missing", num_examples=1)
    client, _ = _serve(app)
    try:
        _, caption, message = client.predict(handle_file(files["image"]), *DECODING, api_name="/caption")
        assert caption == "" and "No model found" in message and "anytoken fit" in message
    finally:
        app.close()
    wrong = load_demo("vqa").build_app(ckpt=tmp_path / "missing")  # builds, and says so in the page
    wrong.close()


def test_tokenizers_app_shows_grid_and_reconstruction_for_every_panel(releases, files) -> None:
    module = load_demo("tokenizers")
    app = module.build_app(ckpt=releases["captioning"])
    client, _ = _serve(app)
    try:
        grid, summary, original, recon, error = client.predict(None, "a small red circle", None,
                                                               api_name="/tokenize_text")
        assert grid is not None and "tokens" in summary
        assert recon == original == "a small red circle" and error == 0.0
        for modality in module.PANELS:
            grid, summary, original, recon, error = client.predict(
                None, "", None, api_name=f"/tokenize_{modality}"
            )
            assert grid is not None and "tokens" in summary, modality
            assert recon is not None and error is not None and error >= 0, modality
        upload = handle_file(files["not_image"])
        grid, summary, *_ = client.predict(None, "", upload, api_name="/tokenize_image")
        assert grid is None and "is not a file the image tokenizer reads" in summary
    finally:
        app.close()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is missing (apt-get install chromium)")
def test_captioning_app_renders_in_a_headless_browser(releases, tmp_path: Path) -> None:
    app = load_demo("captioning").build_app(ckpt=releases["captioning"], num_examples=2)
    _, url = _serve(app)
    shot = tmp_path / "captioning.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900",
             "--virtual-time-budget=15000", f"--screenshot={shot}"]
    try:
        result = subprocess.run([_chromium(), *flags, url], capture_output=True, text=True, timeout=60,
                                env=os.environ | {"HOME": str(tmp_path)})
    finally:
        app.close()
    assert shot.is_file(), f"chromium wrote no screenshot (rc {result.returncode}): {result.stderr[-2000:]}"
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 900)
        colours = len(set(image.convert("RGB").resize((320, 225)).getdata()))
    assert colours > 20, "the screenshot is blank: the app did not render"


def test_demo_command_rejects_bad_arguments(capsys: pytest.CaptureFixture) -> None:
    from anytoken.cli import main

    with pytest.raises(SystemExit):
        main(["demo", "nope"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--tokenizer is for the tokenizers demo only"):
        main(["demo", "vqa", "--tokenizer", "somewhere"])
    with pytest.raises(ValueError, match="unknown demo"):
        load_demo("anything_else")
