"""Gradio app: what trained releases generate, one tab per kind of output.

    anytoken demo generate [--ckpt RELEASE] [--port 7860]

- **text -> image**: a caption drawn as VQ image tokens, with the classifier-free guidance scale;
- **text -> speech**: a text spoken as audio codec tokens, decoded to a WAV file that plays in the page;
- **table rows**: synthetic rows, optionally with one column fixed;
- **pose**: the keypoints estimated from a picture, drawn on that picture;
- **forecast**: sampled future trajectories drawn over the observed ones.

Each tab uses the first release that holds its task: the one given with ``--ckpt`` (an any-to-any mixture
fills several tabs), or, without it, the release the task's shipped config writes (``TASKS``). A tab whose
task no release holds says so, and how to train one.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
import pandas as pd
import torch

from anytoken import AnytokenModel
from demos.pictures import draw_forecast, draw_lines, spectrogram, tensor_image
from demos.widgets import (
    example_figures,
    example_files,
    image_input,
    load_task_model,
    picture_picker,
    read_image,
    recogniser,
    scratch_folder,
    thumbnails,
)

HISTORY, MAX_HORIZON = 8, 24  # built-in forecast scenes: observed steps (the shipped config's), most future


class Task(NamedTuple):
    """A tab: its title, the release its shipped config writes, and the commands that train it."""

    title: str
    default: str
    train: str


TASKS = {  # format kind -> its tab
    "text_to_image": Task("text -> image", "runs/text_to_image_scenes/release",
                          "anytoken fit --config configs/vq_image_scenes.yaml, then "
                          "anytoken fit --config configs/text_to_image_scenes.yaml"),
    "speak": Task("text -> speech", "runs/speech_tts/release",
                  "anytoken fit --config configs/codec_speech16k.yaml, then "
                  "anytoken fit --config configs/speech_tts.yaml"),
    "table_generation": Task("table rows", "runs/table_generate_iris/release",
                             "anytoken fit --config configs/table_generate_iris.yaml"),
    "pose_estimation": Task("pose", "runs/pose_stick_figures/release",
                            "anytoken fit --config configs/pose_stick_figures.yaml"),
    "forecast": Task("forecast", "runs/forecast_motion/release",
                     "anytoken fit --config configs/forecast_motion.yaml"),
}


Found = tuple[AnytokenModel | None, str]  # a model (None: none found) and its status markdown


def find_models(ckpt: str | Path | Sequence[str | Path] | None) -> dict[str, Found]:
    """Format kind -> ``(model, status markdown)``: the first release of ``ckpt`` (default: each task's
    ``TASKS`` release) holding that task, or ``(None, why not)``. Each release is loaded once."""
    given = [ckpt] if isinstance(ckpt, (str, Path)) else list(ckpt or [])
    loaded: dict[Path, Found] = {}
    out = {}
    for kind, task in TASKS.items():
        tried = []
        for path in [Path(p) for p in given or [task.default]]:
            if path not in loaded:
                loaded[path] = load_task_model(path, None, task.train)
            model, status = loaded[path]
            if model is not None and any(f.kind == kind for f in model.formats.values()):
                out[kind] = (model, status)
                break
            if not path.exists():
                tried.append(f"nothing at `{path}`.")
            else:  # a broken file says why; a model of other tasks, which ones
                tried.append(status if model is None else f"`{path}` has no {task.title} task.")
        else:
            out[kind] = (None, f"**No release for {task.title} here:** {' '.join(tried)} Train one with "
                               f"`{task.train}`, or pass `--ckpt RELEASE`.")
    return out


@contextmanager
def _generating(seed: float) -> Iterator[None]:
    """Torch's random numbers follow ``seed`` inside (the server's own stream is left as it was), and a
    model error on the input becomes a message in the page, never a traceback."""
    with torch.random.fork_rng():
        torch.manual_seed(int(seed))
        try:
            yield
        except (ValueError, RuntimeError) as err:
            raise gr.Error(str(err)) from None


def _prompts(count: int = 6) -> list[str]:
    from anytoken.tasks.data.synthetic.scenes import ScenesConfig, make_scenes

    return [s.caption() for s in make_scenes("test", count, ScenesConfig(max_objects=1))]


def _draw_tab(model: AnytokenModel) -> None:
    fmt = model.task_format("text_to_image")
    prompts = _prompts()
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(value=prompts[0], label="Caption to draw", elem_id="draw_prompt")
            gr.Examples([[p] for p in prompts], inputs=[prompt], label="Built-in test captions")
            guidance = gr.Slider(1.0, 8.0, value=fmt.decoding_of(model).guidance_scale, step=0.5,
                                 label="Guidance scale (1 = off; higher follows the caption more closely)")
            with gr.Row():
                count = gr.Slider(1, 8, value=4, step=1, label="Images")
                seed = gr.Number(value=0, precision=0, label="Seed")
            button = gr.Button("Draw", variant="primary")
        with gr.Column():
            gallery = gr.Gallery(label="Drawn", columns=4, height="auto", elem_id="drawn")
            message = gr.Markdown()

    def draw(text: str, scale: float, n: float, seed_value: float,
             progress: gr.Progress = gr.Progress()) -> tuple[list[Any], str]:
        if not text.strip():
            raise gr.Error("Type a caption to draw first.")
        progress(0.05, desc=f"drawing {int(n)} images")
        start = time.perf_counter()
        decoding = replace(fmt.decoding_of(model), guidance_scale=float(scale))
        with _generating(seed_value):
            images = model.draw([text] * int(n), decoding)  # (n, 3, H, W) in [0, 1]
        took = f"{int(n)} images of {images.shape[-1]} px in {time.perf_counter() - start:.1f} s."
        return [tensor_image(x, 192) for x in images], took

    button.click(draw, [prompt, guidance, count, seed], [gallery, message], api_name="draw")


def _speak_tab(model: AnytokenModel, folder: Path) -> None:
    codec = model.tokenizers["audio"]
    with gr.Row():
        with gr.Column():
            text = gr.Textbox(value=_prompts(1)[0], label="Text to speak", elem_id="speak_text")
            gr.Examples([[p] for p in _prompts()], inputs=[text], label="Built-in test captions")
            seed = gr.Number(value=0, precision=0, label="Seed")
            button = gr.Button("Speak", variant="primary")
        with gr.Column():
            audio = gr.Audio(label="Speech (WAV)", type="filepath", interactive=False, elem_id="speech")
            picture = gr.Image(label="Log-mel spectrogram", type="pil", interactive=False)
            message = gr.Markdown()

    def speak(words: str, seed_value: float, progress: gr.Progress = gr.Progress()) -> tuple[str, Any, str]:
        if not words.strip():
            raise gr.Error("Type a text to speak first.")
        progress(0.05, desc="generating codec tokens")
        start = time.perf_counter()
        with _generating(seed_value):
            wave = model.speak([words])[0]  # (C, T) at the codec's rate
        path = Path(tempfile.mkstemp(suffix=".wav", dir=folder)[1])
        codec.write_media(wave, path)
        seconds = wave.shape[-1] / codec.sample_rate
        took = (f"{seconds:.1f} s of speech at {codec.sample_rate} Hz, generated in "
                f"{time.perf_counter() - start:.1f} s.")
        return str(path), spectrogram(wave, codec.sample_rate), took

    button.click(speak, [text, seed], [audio, picture, message], api_name="speak")


def _fixed(model: AnytokenModel, column: str | None, value: str, n: int) -> pd.DataFrame | None:
    """The given-columns frame of ``n`` rows with ``column`` set to ``value`` (None: nothing fixed)."""
    if not column or not str(value).strip():
        return None
    table = model.tokenizers["table"]
    if table.column(column).kind == "categorical":
        return pd.DataFrame({column: [str(value).strip()] * n})
    try:
        return pd.DataFrame({column: [float(value)] * n})
    except ValueError:
        raise gr.Error(f"{column!r} holds numbers: {value!r} is not one") from None


def _rows_tab(model: AnytokenModel) -> None:
    columns = list(model.tokenizers["table"].columns)
    with gr.Row():
        with gr.Column(scale=1):
            count = gr.Slider(1, 64, value=10, step=1, label="Rows")
            column = gr.Dropdown([None, *columns], value=None, label="Fix a column (optional)")
            value = gr.Textbox(label="... to this value", placeholder="e.g. setosa, or 5.1")
            seed = gr.Number(value=0, precision=0, label="Seed")
            button = gr.Button("Sample rows", variant="primary")
        with gr.Column(scale=2):
            rows = gr.Dataframe(label="Sampled rows", interactive=False, elem_id="rows")
            message = gr.Markdown()

    def sample(n: float, fixed: str | None, text: str, seed_value: float,
               progress: gr.Progress = gr.Progress()) -> tuple[pd.DataFrame, str]:
        progress(0.05, desc=f"sampling {int(n)} rows")
        start = time.perf_counter()
        given = _fixed(model, fixed, text, int(n))
        with _generating(seed_value):
            out = model.sample_rows(int(n)) if given is None else model.sample_rows(given=given)
        return out.round(4), f"{len(out)} rows in {time.perf_counter() - start:.1f} s."  # shown rounded

    button.click(sample, [count, column, value, seed], [rows, message], api_name="sample_rows")


def _pose_tab(model: AnytokenModel) -> None:
    pictures, truths = zip(*example_figures(8))
    paths = example_files(pictures, "figure")
    truth_of = recogniser(paths, truths)
    edges = model.tokenizers["pose"].skeleton
    with gr.Row():
        with gr.Column():
            image = image_input(paths)
            thumbnails(paths, [image], label="Built-in test stick figures (click one)",
                       elem_id="pose_examples")
            button = gr.Button("Estimate the pose", variant="primary")
        with gr.Column():
            drawn = gr.Image(label="Estimated pose (red; the true one in grey for built-in figures)",
                             type="pil", interactive=False, elem_id="pose_drawn", height=320)
            message = gr.Markdown()

    def estimate(file: str | None) -> tuple[Any, str]:
        images, picture, problem = read_image(file, model)
        if images is None:
            raise gr.Error(problem.replace("**", ""))
        start = time.perf_counter()
        with _generating(0):
            keypoints = model.predict_pose(images)[0]  # (K, 3), normalised to the image
        lines = [[(float(x), float(y)) if v > 0 else None for x, y, v in kp.tolist()]
                 for kp in [truth_of(picture), keypoints] if kp is not None]
        colors = [(150, 150, 150), (255, 40, 40)][-len(lines):]
        visible = int((keypoints[:, 2] > 0).sum())
        ms = 1000 * (time.perf_counter() - start)
        took = f"{visible} of {len(keypoints)} keypoints visible, estimated in {ms:.0f} ms."
        return draw_lines(lines, edges, picture, size=320, width=3, colors=colors), took

    button.click(estimate, [image], [drawn, message], api_name="pose")


def _scenes(count: int = 6) -> dict[str, torch.Tensor]:
    """Built-in test motion scenes: name -> positions ``[A, HISTORY + MAX_HORIZON, 2]``."""
    from anytoken.tasks.data.synthetic.motion import MotionDataset

    data = MotionDataset("test", count, num_steps=HISTORY + MAX_HORIZON)
    return {f"scene {i}": torch.as_tensor(data[i]["positions"], dtype=torch.float64) for i in range(count)}


def _forecast_tab(model: AnytokenModel) -> None:
    fmt = model.task_format("forecast")
    tok = model.tokenizers["trajectory"]
    scenes = _scenes()
    with gr.Row():
        with gr.Column():
            pictures = {name: draw_forecast(x[:, :HISTORY], size=160) for name, x in scenes.items()}
            choice = picture_picker(pictures, "Built-in test scenes: observed paths (click one)",
                                    elem_id="forecast_examples")
            upload = gr.File(label="Or upload a CSV (scene, agent, t, x, y): every step observed",
                             file_types=[".csv"], type="filepath")
            with gr.Row():
                futures = gr.Slider(1, 8, value=min(fmt.num_futures, 8), step=1, label="Sampled futures")
                horizon = gr.Slider(1, MAX_HORIZON, value=12, step=1, label="Steps ahead")
            seed = gr.Number(value=0, precision=0, label="Seed")
            button = gr.Button("Forecast", variant="primary")
        with gr.Column():
            drawn = gr.Image(label="Observed (thick), sampled futures (thin), true future (grey)", type="pil",
                             interactive=False, elem_id="forecast_drawn", height=360)
            message = gr.Markdown()

    def forecast(name: str | None, file: str | None, k: float, steps: float, seed_value: float,
                 progress: gr.Progress = gr.Progress()) -> tuple[Any, str]:
        truth = None
        if file:
            try:
                past = tok.read_media(Path(file))  # (A, T, 2)
            except (ValueError, OSError) as err:
                raise gr.Error(f"{Path(file).name} is not a trajectory CSV: {err}") from None
        else:
            scene = scenes.get(name) if name else next(iter(scenes.values()))
            if scene is None:
                raise gr.Error("Pick a built-in scene or upload a CSV first.")
            past, truth = scene[:, :HISTORY], scene[:, HISTORY : HISTORY + int(steps)]
        if past.shape[1] < 2:
            raise gr.Error("A forecast needs at least 2 observed steps per agent.")
        progress(0.05, desc=f"sampling {int(k)} futures")
        start = time.perf_counter()
        with _generating(seed_value):
            ids = tok.encode(past)[None]  # (1, 2A(H-1)): time-major, agents inner
            paths = model.forecast(ids, past[None], int(steps), int(k), fmt.sampling)[0]  # (k,A,F,2)
        took = (f"{int(k)} futures of {int(steps)} steps for {past.shape[0]} agents in "
                f"{time.perf_counter() - start:.1f} s.")
        return draw_forecast(past, paths, truth), took

    button.click(forecast, [choice, upload, futures, horizon, seed], [drawn, message], api_name="forecast")


def build_app(ckpt: str | Path | Sequence[str | Path] | None = None) -> gr.Blocks:
    """The generation app; every release is loaded once, here.

    Args:
        ckpt: a release directory or ``.ckpt`` file, or several (each tab takes the first holding its task);
            None: each task's ``TASKS`` release.
    """
    models = find_models(ckpt)
    folder = scratch_folder("anytoken-generate-demo-")
    tabs = {"text_to_image": _draw_tab, "speak": lambda m: _speak_tab(m, folder),
            "table_generation": _rows_tab, "pose_estimation": _pose_tab, "forecast": _forecast_tab}
    with gr.Blocks(title="anytoken: generation") as app:
        gr.Markdown("# Generation\nImages, speech, table rows, poses and trajectories from trained releases.")
        for kind, build in tabs.items():
            model, status = models[kind]
            with gr.Tab(TASKS[kind].title):
                gr.Markdown(status, elem_classes=["release-status"])
                if model is not None:
                    build(model)
    return app
