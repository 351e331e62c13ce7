"""The generation app on a tiny untrained release holding every generation task, driven through
gradio_client: images, a WAV, rows, a pose overlay and a forecast plot; tabs whose task no release holds
say so; bad input gets a message (gr.Error), never a traceback."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")
from gradio_client import handle_file  # noqa: E402
from PIL import Image  # noqa: E402

from anytoken.cli import load_demo  # noqa: E402
from anytoken.tasks.data.synthetic.stick_figures import StickFiguresDataset  # noqa: E402


@pytest.fixture
def app_client(served, releases):  # noqa: ANN001, ANN201 - the served app's gradio_client.Client
    return served("generate", ckpt=releases["generation"])[0]


def test_generation_app_makes_every_output(app_client, tmp_path) -> None:
    images, message = app_client.predict("a small red square at the top left", 2.0, 2, 0, api_name="/draw")
    assert len(images) == 2 and "2 images" in message
    with Image.open(images[0]["image"]["path"]) as image:
        assert image.size == (192, 192)
    wav, spectrogram, message = app_client.predict("a small red square", 0, api_name="/speak")
    assert wav["path"].endswith(".wav") and spectrogram is not None and "of speech at 8000 Hz" in message
    rows, message = app_client.predict(5, None, "", 0, api_name="/sample_rows")
    assert len(rows["data"]) == 5 and "target" in rows["headers"] and "5 rows" in message
    rows, _ = app_client.predict(3, "target", "setosa", 0, api_name="/sample_rows")
    target = rows["headers"].index("target")
    assert [row[target] for row in rows["data"]] == ["setosa"] * 3  # the fixed column is kept
    StickFiguresDataset("test", 1)[0]["image"].save(tmp_path / "figure.png")
    drawn, message = app_client.predict(handle_file(str(tmp_path / "figure.png")), api_name="/pose")
    assert drawn is not None and "keypoints visible" in message
    plot, message = app_client.predict("scene 1", None, 2, 5, 0, api_name="/forecast")
    assert plot is not None and "2 futures of 5 steps for 3 agents" in message


def test_generation_app_answers_bad_input_with_a_message(app_client, tmp_path) -> None:
    with pytest.raises(Exception, match="Type a caption to draw first"):
        app_client.predict("  ", 2.0, 1, 0, api_name="/draw")
    with pytest.raises(Exception, match="holds numbers"):
        app_client.predict(3, "petal width (cm)", "wide", 0, api_name="/sample_rows")
    (tmp_path / "tracks.csv").write_text("not,a,trajectory\n1,2,3\n")
    with pytest.raises(Exception, match="tracks.csv is not a trajectory CSV"):
        csv = handle_file(str(tmp_path / "tracks.csv"))
        app_client.predict("scene 0", csv, 1, 3, 0, api_name="/forecast")


def test_generation_tabs_say_when_no_release_holds_their_task(releases, tmp_path) -> None:
    module = load_demo("generate")
    found = module.find_models([tmp_path / "missing", releases["captioning"]])
    for kind, task in module.TASKS.items():
        model, status = found[kind]
        assert model is None and f"No release for {task.title}" in status and task.train in status
        assert "has no" in status and "nothing at" in status and status.count("Train one") == 1
    mixed = module.find_models([releases["captioning"], releases["generation"]])
    assert all(model is not None for model, _ in mixed.values())  # the first release holding each task
    module.build_app(ckpt=tmp_path / "missing").close()  # builds, each tab saying how to train its model
