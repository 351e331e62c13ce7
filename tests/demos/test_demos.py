"""The captioning, VQA and tokenizers apps on tiny untrained releases, launched on 127.0.0.1 and driven
through gradio_client: answers, references revealed after the answer, every tokenizer tab (audio with a
mu-law tokenizer and a saved codec side by side), and bad input answered with a message."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("gradio")
import torch  # noqa: E402
from gradio_client import handle_file  # noqa: E402
from PIL import Image  # noqa: E402
from tiny_releases import serve  # noqa: E402

from anytoken.cli import load_demo  # noqa: E402
from anytoken.tasks.data.synthetic.scenes import make_scenes  # noqa: E402

DECODING = ("greedy", 2, 1.0, 0, 1.0, 6)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("uploads")
    scene = make_scenes("test", 1)[0]
    scene.render(64).resize((256, 256), Image.NEAREST).save(root / "scene.png")  # the first example's file
    make_scenes("train", 1)[0].render(64).save(root / "other.png")
    (root / "notes.png").write_text("this is text, not an image")
    (root / "truncated.png").write_bytes((root / "scene.png").read_bytes()[:300])
    return {"scene": str(root / "scene.png"), "other": str(root / "other.png"),
            "not_image": str(root / "notes.png"), "truncated": str(root / "truncated.png"),
            "caption": scene.caption()}


def test_captioning_app_captions_then_reveals_the_reference(served, releases, files) -> None:
    client, _ = served("captioning", ckpt=releases["captioning"], num_examples=3)
    seen, caption, reference, message = client.predict(handle_file(files["scene"]), *DECODING,
                                                       api_name="/caption")
    assert seen is not None and isinstance(caption, str) and "Captioned in" in message
    assert reference == files["caption"]  # a built-in scene, recognised by its pixels
    _, caption, reference, _ = client.predict(handle_file(files["other"]), "beam", 2, 1.0, 0, 1.0, 4,
                                              api_name="/caption")
    assert isinstance(caption, str) and "no reference" in reference
    truncated = handle_file(files["truncated"])
    _, caption, _, message = client.predict(truncated, *DECODING, api_name="/caption")
    assert caption == "" and "Not an image file" in message and "truncated.png" in message
    with pytest.raises(Exception, match="cannot identify image file"):  # refused before the app runs
        client.predict(handle_file(files["not_image"]), *DECODING, api_name="/caption")
    _, caption, _, message = client.predict(None, *DECODING, api_name="/caption")
    assert caption == "" and "Upload an image" in message


@pytest.mark.parametrize("which", ["vqa", "vqa_classify"])
def test_vqa_app_answers_with_both_heads_then_the_truth(served, releases, files, which: str) -> None:
    client, _ = served("vqa", ckpt=releases[which], num_examples=3)
    qa = make_scenes("test", 1)[0].questions()[0]
    image = handle_file(files["scene"])
    _, answer, truth, message = client.predict(image, qa.question, *DECODING, api_name="/answer")
    assert isinstance(answer, str) and "Answered in" in message and truth == qa.answer
    if which == "vqa_classify":
        assert answer in {"yes", "no", "red"}
    _, _, truth, _ = client.predict(image, "is this a photo?", *DECODING, api_name="/answer")
    assert "no reference" in truth
    _, answer, _, message = client.predict(image, "  ", *DECODING, api_name="/answer")
    assert answer == "" and "Type a question" in message


def test_apps_without_a_checkpoint_say_how_to_train_one(tmp_path: Path, files) -> None:
    app = load_demo("captioning").build_app(ckpt=tmp_path / "missing", num_examples=1)
    client, _ = serve(app)
    try:
        _, caption, _, message = client.predict(handle_file(files["scene"]), *DECODING, api_name="/caption")
        assert caption == "" and "No model found" in message and "anytoken fit" in message
    finally:
        app.close()
    load_demo("vqa").build_app(ckpt=tmp_path / "missing").close()  # builds, and says so in the page


@pytest.fixture
def tokenizers(served, releases, codec_dir):  # noqa: ANN001, ANN201 - (the app's module, its client)
    """The tokenizers app: text from the captioning release, a saved codec beside the mu-law default."""
    client, _ = served("tokenizers", ckpt=releases["captioning"], tokenizer_dirs=[str(codec_dir)])
    return load_demo("tokenizers"), client


def test_tokenizers_app_shows_grid_and_reconstruction_for_every_tab(tokenizers, files) -> None:
    module, client = tokenizers
    grid, summary, _, original, recon, error = client.predict(None, "a small red circle", None,
                                                              api_name="/tokenize_text")
    assert grid is not None and "tokens" in summary
    assert recon == original == "a small red circle" and error == 0.0
    for api in [f"/tokenize_{m}" for m in module.PANELS] + ["/tokenize_audio_2"]:  # _2: mu-law
        grid, summary, pair, original, recon, error = client.predict(None, "", None, api_name=api)
        assert grid is not None and "tokens" in summary, api
        assert recon is not None and error is not None, api
        if api.startswith("/tokenize_audio"):
            assert all(word in summary for word in ("kbps", "SI-SNR", "mel distance")), summary
            assert pair is not None and recon["path"].endswith(".wav"), api
    upload = handle_file(files["not_image"])
    grid, summary, *_ = client.predict(None, "", upload, api_name="/tokenize_image")
    assert grid is None and "is not a file the image tokenizer reads" in summary


def test_tokenizers_app_tokenizes_an_uploaded_clip(tokenizers, tmp_path) -> None:
    import soundfile as sf

    _, client = tokenizers
    t = torch.arange(8000) / 8000
    sf.write(tmp_path / "tone.wav", (0.3 * torch.sin(2 * torch.pi * 440 * t)).numpy(), 8000)
    tone = handle_file(str(tmp_path / "tone.wav"))
    _, summary, _, _, _, error = client.predict(None, "", tone, api_name="/tokenize_audio_2")
    assert "16000 tokens" in summary and error < -20  # mu-law at 16 kHz: better than 20 dB SI-SNR
    _, summary, *_ = client.predict(None, "", tone, api_name="/tokenize_audio")
    assert "shape (1, 4, 40)" in summary and "0.64 kbps" in summary  # 4 levels x 4 bits x 40 frames/s
    (tmp_path / "noise.wav").write_text("not a sound")
    grid, summary, *_ = client.predict(None, "", handle_file(str(tmp_path / "noise.wav")),
                                       api_name="/tokenize_audio")
    assert grid is None and "is not a file the audio tokenizer reads" in summary


def test_demo_command_rejects_bad_arguments(capsys: pytest.CaptureFixture) -> None:
    from anytoken.cli import main

    with pytest.raises(SystemExit):
        main(["demo", "nope"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--tokenizer is for the tokenizers demo only"):
        main(["demo", "vqa", "--tokenizer", "somewhere"])
    with pytest.raises(ValueError, match="unknown demo"):
        load_demo("anything_else")
