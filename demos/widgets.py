"""What the captioning and VQA apps share: loading a model with a message instead of a crash, reading an
uploaded image with a clear error, the decoding controls, example scenes, and how an app is launched.
"""

from __future__ import annotations

import tempfile
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
    folder = Path(tempfile.mkdtemp(prefix="anytoken-demo-"))
    out = []
    for i, scene in enumerate(make_scenes("test", count)):
        path = folder / f"scene_{i}.png"
        scene.render(image_size).resize((256, 256), Image.NEAREST).save(path)
        out.append((str(path), scene))
    return out


def launch(app: gr.Blocks, port: int | None = None, block: bool = True) -> str:
    """Serve ``app`` on 127.0.0.1 (no share link, no server-side rendering); returns its local URL."""
    app.queue(default_concurrency_limit=1)  # one model, one request at a time
    _, url, _ = app.launch(
        server_name=HOST, server_port=port, prevent_thread_lock=not block, share=False, ssr_mode=False,
        quiet=not block, show_error=True,
    )
    return url
