"""The any-to-any demo on a tiny untrained mixture, launched on 127.0.0.1 and driven through gradio_client:
the same image gives a caption or keypoints by the task picked, a table row gives a prediction, a
trajectory a forecast, and missing or bad input a message."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("gradio")
import torch  # noqa: E402
from gradio_client import handle_file  # noqa: E402
from tiny_releases import ENTRIES, MODEL, serve  # noqa: E402

from anytoken.cli import load_demo  # noqa: E402
from anytoken.tasks.data.mixture import MixtureDataModule  # noqa: E402
from anytoken.tasks.data.synthetic.scenes import make_scenes  # noqa: E402
from anytoken.tasks.mixture import MixtureModule  # noqa: E402


def _serve(app):  # noqa: ANN001, ANN202 - a gr.Blocks -> client
    return serve(app)[0]


def test_anything_app_answers_each_task_in_its_modality(served, anything_release, tmp_path) -> None:
    make_scenes("test", 1)[0].render(64).save(tmp_path / "scene.png")
    (tmp_path / "notes.png").write_bytes((tmp_path / "scene.png").read_bytes()[:100])  # truncated
    image = handle_file(str(tmp_path / "scene.png"))
    client, _ = served("anything", ckpt=anything_release)
    def run(task, image_file=None, text="", row="", history="", audio=None):  # noqa: ANN001, ANN202
        return client.predict(task, image_file, text, row, history, audio, 3, api_name="/run")

    _, caption, _, _, message = run("caption", image)
    assert isinstance(caption, str) and "done in" in message
    shown, text, keypoints, _, message = run("pose", image)
    assert shown is not None and text == "" and len(keypoints) == 17 and "done in" in message
    row = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4,
           "petal width (cm)": 0.2}
    _, value, data, _, message = run("table", row=json.dumps(row))
    assert value in {"setosa", "versicolor", "virginica", "(missing)"} and "done in" in message
    assert data == {"target": None if value == "(missing)" else value}
    history = json.dumps([[[0, 0], [0.5, 0], [1, 0]], [[5, 5], [5, 5.5], [5, 6]]])
    _, _, future, _, message = run("forecast", history=history)
    assert torch.tensor(future["future"]).shape == (2, 3, 2), message
    _, text, _, _, message = run("pose", handle_file(str(tmp_path / "notes.png")))
    assert text == "" and "Not an image file" in message
    _, _, _, _, message = run("table", row="[1, 2]")
    assert "needs table row" in message and "JSON object" in message
    _, _, _, _, message = run("caption")
    assert "Upload an image" in message


def test_anything_app_without_a_checkpoint_says_how_to_train_one(tmp_path) -> None:
    app = load_demo("anything").build_app(ckpt=tmp_path / "missing")
    client = _serve(app)
    try:
        *_, message = client.predict(None, None, "", "", "", None, 3, api_name="/run")
        assert "No model found" in message and "anything_tiny.yaml" in message
    finally:
        app.close()


def test_anything_app_answers_a_spoken_question_about_an_image(tmp_path) -> None:
    from test_mixture import SPOKEN_VQA

    from anytoken.tasks.data.synthetic.spoken import Utterance, espeak_path, synthesize

    if espeak_path() is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    import soundfile as sf

    torch.manual_seed(0)
    few = {"num_train": 2, "num_val": 1, "num_test": 1}  # the vocab is all the app needs: few utterances
    entries = {name: entry | {"data_args": entry["data_args"] | few}
               for name, entry in (("caption", ENTRIES["caption"]), ("spoken_vqa", SPOKEN_VQA))}
    data = MixtureDataModule(entries)
    model = MixtureModule(data.vocab, **{**MODEL, "backbone": {**MODEL["backbone"], "max_seq_len": 512}})
    release = model.export(tmp_path / "anything")
    make_scenes("test", 1)[0].render(64).save(tmp_path / "scene.png")
    sf.write(tmp_path / "question.wav", synthesize(Utterance("what color is the circle?"), 16000)[0].numpy(),
             16000)
    app = load_demo("anything").build_app(ckpt=release)
    client = _serve(app)
    try:
        image = handle_file(str(tmp_path / "scene.png"))
        audio = handle_file(str(tmp_path / "question.wav"))
        _, answer, _, _, message = client.predict("spoken_vqa", image, "", "", "", audio, 3, api_name="/run")
        assert isinstance(answer, str) and "done in" in message
        _, _, _, _, message = client.predict("spoken_vqa", image, "", "", "", None, 3, api_name="/run")
        assert "spoken question" in message
    finally:
        app.close()
