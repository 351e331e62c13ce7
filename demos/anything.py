"""Gradio app: one any-to-any model, any input media, any task it was trained on.

    anytoken demo anything [--ckpt runs/anything_tiny/release] [--port 7860]

Give an image (a built-in scene or stick figure is loaded, others are a click away), a text, an audio
file, a table row (JSON) or a trajectory history (JSON, an example is filled in), pick the task tag,
and the same backbone answers in the modality the tag asks for: ``<caption>`` text or ``<pose_estimation>``
keypoints for the same image, a VQA answer (to a typed or a spoken question), a forecast, a table
prediction, a transcript, speech or a drawing, as the model's tasks allow. Without a model the app still
starts and says how to train one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import torch

from anytoken import AnytokenModel, TaskFormat
from demos.pictures import draw_pose, tensor_image
from demos.widgets import example_figures, example_files, image_input, load_task_model, read_image, thumbnails

DEFAULT_CKPT = Path("runs/anything_tiny/release")  # where configs/anything_tiny.yaml writes its release
TRAIN_HINT = "anytoken fit --config configs/anything_tiny.yaml"
NEEDS = {  # format kind -> the inputs it reads (shown in the page, checked before running)
    "caption": "image",
    "vqa": "image + text (the question)",
    "pose_estimation": "image",
    "forecast": "trajectory",
    "table_prediction": "table row",
    "transcribe": "audio",
    "speak": "text",
    "text_to_image": "text (the caption)",
}
Result = tuple[Any, str, Any, Any, str]  # image, text, JSON, audio, message
EXAMPLE_HISTORY = "[[[0, 0], [0.5, 0], [1, 0]], [[5, 5], [5, 5.5], [5, 6]]]"  # two agents, three steps


def _needs(fmt: TaskFormat) -> str:
    if fmt.kind == "vqa" and fmt.question_modality == "audio":
        return "image + audio (the spoken question)"
    return NEEDS.get(fmt.kind, "")


def _image_task(model: AnytokenModel, fmt: TaskFormat, image_file: str | None, text: str,
                audio_file: str | None) -> Result:
    """Caption, answer a (typed or spoken) question about, or find the pose in an uploaded image."""
    images, image, problem = read_image(image_file, model)
    if images is None:
        raise ValueError(problem)
    if fmt.kind == "caption":
        return image, fmt.caption(model, images)[0], None, None, ""
    if fmt.kind == "vqa" and fmt.question_modality == "audio":
        if audio_file is None:
            raise ValueError("Upload the spoken question as an audio file.")
        wave = model.media_tokenizers["audio"].read_media(Path(audio_file))[0]  # (C, T)
        return image, fmt.ask(model, images, [wave])[0], None, None, ""
    if fmt.kind == "vqa":
        if not text.strip():
            raise ValueError("Type a question in the text box.")
        return image, fmt.ask(model, images, [text])[0], None, None, ""
    keypoints = fmt.predict_keypoints(model, images)[0]  # (K, 3), normalised to the image
    pose = model.tokenizers["pose"]
    drawn = draw_pose(keypoints, pose.skeleton, image)
    return drawn, "", dict(zip(pose.keypoint_names, keypoints.tolist())), None, ""


def _run(model: AnytokenModel, task: str, image_file: str | None, text: str, row: str, history: str,
         audio_file: str | None, horizon: float) -> Result:
    """Run task ``task`` (a format of ``model``); raises ValueError with what is missing or wrong in the
    input."""
    fmt = model.formats[task]
    if fmt.kind in ("caption", "vqa", "pose_estimation"):
        return _image_task(model, fmt, image_file, text, audio_file)
    if fmt.kind == "table_prediction":
        values = json.loads(row or "null")
        if not isinstance(values, dict):
            raise ValueError("Give the table row as a JSON object: {\"column\": value, ...}.")
        value = fmt.predict(model, pd.DataFrame([values])).iloc[0]
        value = None if pd.isna(value) else value if isinstance(value, str) else float(value)
        return None, "(missing)" if value is None else str(value), {fmt.target: value}, None, ""
    if fmt.kind == "forecast":
        past = torch.tensor(json.loads(history or "null"), dtype=torch.float64)
        if past.dim() != 3 or past.shape[-1] != 2 or past.shape[1] < 2:
            raise ValueError("Give the history as JSON [agent][step][x, y] with at least 2 steps per agent.")
        ids = model.tokenizers["trajectory"].encode(past)[None]  # (1, 2A(H-1)), time-major as in training
        future = fmt.forecast(model, ids, past[None], int(horizon))[0, 0]  # (A, F, 2)
        return None, "", {"future": future.tolist()}, None, ""
    if fmt.kind == "transcribe":
        if audio_file is None:
            raise ValueError("Upload an audio file.")
        wave = model.media_tokenizers["audio"].read_media(Path(audio_file))
        return None, fmt.transcribe_waves(model, [wave])[0], None, None, ""
    if not text.strip():  # speak, text_to_image
        raise ValueError("Type a text first.")
    if fmt.kind == "text_to_image":
        return tensor_image(fmt.draw(model, [text])[0], 256), "", None, None, ""
    wave = fmt.speak(model, [text])[0]  # (C, T)
    return None, "", None, (model.media_tokenizers["audio"].sample_rate, wave[0].numpy()), ""


def _example_pictures(count: int = 3) -> list[str]:
    """Built-in test scenes (for captions, questions) and stick figures (for poses) as image files."""
    from anytoken.tasks.data.synthetic.scenes import make_scenes

    pictures = [scene.render(64) for scene in make_scenes("test", count)]
    return example_files(pictures + [image for image, _ in example_figures(count)], "example")


def build_app(ckpt: str | Path | None = None) -> gr.Blocks:
    """The any-to-any app; the model at ``ckpt`` (default ``DEFAULT_CKPT``) is loaded once, here.

    Args:
        ckpt: a release directory or ``.ckpt`` file (a mixture's; any model works, with the tasks it has).
    """
    model, status = load_task_model(ckpt or DEFAULT_CKPT, None, TRAIN_HINT)
    formats = model.formats if model is not None else {}
    paths = _example_pictures()
    tasks = [name for name, fmt in formats.items() if fmt.kind in NEEDS]  # template tasks have no form

    def run(task: str | None, image_file: str | None, text: str, row: str, history: str,
            audio_file: str | None, horizon: float) -> Result:
        if model is None:
            return None, "", None, None, status
        if task not in tasks:
            return None, "", None, None, f"Pick a task: one of {tasks}."
        start = time.perf_counter()
        try:
            image, out, data, audio, _ = _run(model, task, image_file, text or "", row, history, audio_file,
                                              horizon)
        except (ValueError, json.JSONDecodeError, KeyError) as err:
            return None, "", None, None, f"**{task}** needs {_needs(formats[task])}: {err}"
        return image, out, data, audio, f"{task}: done in {1000 * (time.perf_counter() - start):.0f} ms."

    with gr.Blocks(title="anytoken: any-to-any") as app:
        gr.Markdown("# Any-to-any\nOne backbone, every task: give input media and pick the task tag.")
        gr.Markdown(status)
        if model is not None:
            gr.Markdown("Tasks: " + ", ".join(f"`{t}` ({_needs(formats[t])})" for t in tasks))
        with gr.Row():
            with gr.Column():
                task = gr.Dropdown(tasks, value=tasks[0] if tasks else None, label="Task", elem_id="task")
                image_file = image_input(paths)
                thumbnails(paths, [image_file], label="Built-in test scenes and stick figures (click one)")
                text = gr.Textbox(label="Text (question, caption to draw or to speak)", elem_id="text_in")
                row = gr.Textbox(label="Table row (JSON object)", placeholder='{"alcohol": 13.2, ...}')
                history = gr.Textbox(EXAMPLE_HISTORY, label="Trajectory history (JSON [agent][step][x, y])")
                horizon = gr.Slider(1, 24, value=12, step=1, label="Forecast steps")
                audio_file = gr.File(label="Audio file", file_types=["audio"], type="filepath")
                button = gr.Button("Run", variant="primary")
            with gr.Column():
                shown = gr.Image(label="Image", type="pil", interactive=False, elem_id="image_out")
                out_text = gr.Textbox(label="Text", interactive=False, elem_id="text_out")
                out_json = gr.JSON(label="Structured output")
                out_audio = gr.Audio(label="Speech", interactive=False)
                message = gr.Markdown(elem_id="message")
        button.click(run, [task, image_file, text, row, history, audio_file, horizon],
                     [shown, out_text, out_json, out_audio, message], api_name="run")
    return app
