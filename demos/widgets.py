"""What the apps share: loading a model with a message instead of a crash, reading an uploaded image
with a clear error, the decoding controls, built-in example pictures recognised again by their pixels (to
reveal their reference after the answer), and how an app is launched.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from PIL import Image

import anytoken
from anytoken import AnytokenModel, DecodingConfig
from anytoken.tasks.data.synthetic.scenes import Scene, make_scenes
from anytoken.tokenizers.image_io import image_to_tensor, load_image

HOST = "127.0.0.1"  # the demos never listen on other interfaces


def load_task_model(
    path: str | Path, task: str | None, train_hint: str
) -> tuple[AnytokenModel | None, str]:
    """``(model, status markdown)``; ``(None, why not)`` when ``path`` holds no usable model.

    Args:
        path: a release directory or a Lightning ``.ckpt`` file.
        task: the task format the app needs (e.g. ``"caption"``); None: any model (the any-to-any app).
        train_hint: the command that produces such a model, shown when none is found.
    """
    path = Path(path)
    if not path.exists():
        return None, f"**No model found at `{path}`.** Train one with `{train_hint}`, or pass `--ckpt PATH`."
    try:
        model = anytoken.load(path)
        if task is not None:
            model.task_format(task)
    except ValueError as err:  # LoadError included: a broken, foreign or other-task file gets a message
        return None, f"**Cannot use `{path}`:** {err}"
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return model, f"Model: `{path}` ({', '.join(model.formats)}, {params:.1f}M parameters)"


def read_image(file: str | None, model: Any) -> tuple[torch.Tensor | None, Image.Image | None, str]:
    """An uploaded file -> ``(images [1, 3, S, S], the image, "")`` or ``(None, None, message)``."""
    if file is None:
        return None, None, "Upload an image file or pick an example first."
    try:
        image = load_image(file)
    except ValueError as err:
        return None, None, f"**Not an image file:** `{Path(file).name}` cannot be read as an image ({err})."
    size = model.image_encoder.config.image_size
    return image_to_tensor(image, size)[None], image, ""


def decoding_controls() -> list[gr.components.Component]:
    """Strategy, beams, temperature, top-k, top-p and the token budget, in ``decoding_config``'s order."""
    with gr.Accordion("Decoding", open=False):
        strategy = gr.Radio(["greedy", "sample", "beam"], value="greedy", label="Strategy")
        with gr.Row():
            beams = gr.Slider(1, 8, value=4, step=1, label="Beams (beam)")
            temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature (sample)")
        with gr.Row():
            top_k = gr.Slider(0, 100, value=0, step=1, label="Top-k (sample; 0 = off)")
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p (sample)")
        max_new = gr.Slider(1, 64, value=32, step=1, label="Max new tokens")
    return [strategy, beams, temperature, top_k, top_p, max_new]


def decoding_config(
    strategy: str, beams: float, temperature: float, top_k: float, top_p: float, max_new: float
) -> DecodingConfig:
    """The values of ``decoding_controls`` as a ``DecodingConfig`` (raises ValueError on bad values)."""
    return DecodingConfig(
        strategy=strategy, num_beams=int(beams), temperature=float(temperature),
        top_k=int(top_k) or None, top_p=float(top_p) if top_p < 1 else None, max_new_tokens=int(max_new),
    )


def example_scenes(count: int, image_size: int = 64) -> list[tuple[str, Scene]]:
    """``count`` test-split scenes rendered to PNG files in a new temporary folder: ``(path, scene)``."""
    scenes = make_scenes("test", count)
    return list(zip(example_files([s.render(image_size) for s in scenes], "scene"), scenes))


def example_figures(count: int) -> list[tuple[Image.Image, torch.Tensor]]:
    """``count`` test-split stick figures: ``(image, keypoints [17, 3] normalised to the image)``."""
    from anytoken.tasks.data.synthetic.stick_figures import StickFiguresDataset

    data, out = StickFiguresDataset("test", count), []
    for i in range(count):
        item = data[i]
        keypoints = torch.as_tensor(item["keypoints"], dtype=torch.float32).clone()  # (K, 3) in pixels
        keypoints[:, :2] /= float(item["image"].size[0])
        out.append((item["image"], keypoints))
    return out


def scratch_folder(prefix: str) -> Path:
    """A new temporary folder that lives as long as this process (an app serves files from it)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def example_files(images: Sequence[Image.Image], stem: str, size: int = 256) -> list[str]:
    """``images`` enlarged to ``size`` pixels (nearest neighbour: crisp thumbnails) as PNG files in a new
    temporary folder (removed when the process ends); their paths."""
    folder = scratch_folder("anytoken-demo-")
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{stem}_{i}.png"
        image.resize((size, size), Image.NEAREST).save(path)
        paths.append(str(path))
    return paths


def pixel_key(image: Image.Image) -> str:
    """A digest of an image's RGB pixels: Gradio hands the app a copy of an example file, not its path, so
    the apps recognise their examples by what they show."""
    rgb = image.convert("RGB")
    return hashlib.sha1(repr(rgb.size).encode() + rgb.tobytes()).hexdigest()


def recogniser(paths: Sequence[str], items: Sequence[Any]) -> Callable[[Image.Image | None], Any]:
    """A function from an image to the item of the example file showing the same pixels (None: not one of
    the examples)."""
    known = {pixel_key(load_image(path)): item for path, item in zip(paths, items)}
    return lambda image: None if image is None else known.get(pixel_key(image))


def image_input(paths: Sequence[str], label: str = "Image") -> gr.Image:
    """An image input (upload or paste) that opens showing the first example file."""
    return gr.Image(value=paths[0] if paths else None, label=label, type="filepath",
                    sources=["upload", "clipboard"], height=256)


def thumbnails(paths: Sequence[str], inputs: list[gr.components.Component], extra: Sequence[list[Any]] = (),
               label: str = "Built-in examples (click one)", elem_id: str = "examples") -> gr.Examples:
    """The example files as thumbnails (``gr.Examples``); a click loads one (and its ``extra`` values)
    into ``inputs``."""
    rows = [[path, *more] for path, more in zip(paths, extra or [[]] * len(paths))]
    return gr.Examples(rows, inputs=inputs, label=label, examples_per_page=12, elem_id=elem_id)


def picture_picker(pictures: dict[str, Image.Image], label: str = "Built-in examples (click one)",
                   elem_id: str | None = None) -> gr.Dropdown:
    """A gallery of named pictures (the first selected) above a dropdown of their names; clicking a picture
    picks its name. For examples that are not image files (poses, trajectories, sounds): their picture."""
    names = list(pictures)
    gallery = gr.Gallery(list(zip(pictures.values(), names)), label=label, columns=5, height=150,
                         allow_preview=False, selected_index=0 if names else None, elem_id=elem_id)
    choice = gr.Dropdown(names, value=names[0] if names else None, label="Built-in example")

    def pick(evt: gr.SelectData) -> str:
        return names[evt.index]

    gallery.select(pick, None, choice, api_name=False)
    return choice


def launch(app: gr.Blocks, port: int | None = None, block: bool = True) -> str:
    """Serve ``app`` on 127.0.0.1 (no share link, no server-side rendering); returns its local URL."""
    app.queue(default_concurrency_limit=1)  # one model, one request at a time
    _, url, _ = app.launch(
        server_name=HOST, server_port=port, prevent_thread_lock=not block, share=False, ssr_mode=False,
        quiet=not block, show_error=True,
    )
    return url
