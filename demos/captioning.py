"""Gradio app: caption an image with a trained captioner.

    anytoken demo captioning [--ckpt runs/caption_scenes/release] [--port 7860]

The page opens with a built-in test scene (never seen in training) loaded; click another thumbnail or
upload an image, set the decoding strategy, and get the caption, then the scene's reference caption.
Without a model (no checkpoint at the path) the app still starts and says how to train one; a file that
is not an image gets a message, not an error.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr

from demos.pictures import tensor_image
from demos.widgets import (
    decoding_config,
    decoding_controls,
    example_scenes,
    image_input,
    load_task_model,
    read_image,
    recogniser,
    thumbnails,
)

DEFAULT_CKPT = Path("runs/caption_scenes/release")  # where the quickstart writes its release
TRAIN_HINT = "anytoken fit --config configs/caption_scenes.yaml"


def build_app(ckpt: str | Path | None = None, num_examples: int = 8) -> gr.Blocks:
    """The captioning app; the model at ``ckpt`` (default ``DEFAULT_CKPT``) is loaded once, here.

    Args:
        ckpt: a release directory or ``.ckpt`` file of a captioning model.
        num_examples: built-in test scenes offered as examples.
    """
    model, status = load_task_model(ckpt or DEFAULT_CKPT, "caption", TRAIN_HINT)
    paths, scenes = zip(*example_scenes(num_examples)) if num_examples else ((), ())
    scene_of = recogniser(paths, scenes)

    def caption(file: str | None, *decoding: Any) -> tuple[Any, str, str, str]:
        if model is None:
            return None, "", "", status
        images, image, problem = read_image(file, model)
        if images is None:
            return None, "", "", problem
        try:
            config = decoding_config(*decoding)
        except ValueError as err:
            return None, "", "", f"**Bad decoding settings:** {err}"
        start = time.perf_counter()
        text = model.caption(images, config)[0]
        took = f"Captioned in {1000 * (time.perf_counter() - start):.0f} ms ({config.strategy})."
        scene = scene_of(image)
        reference = scene.caption() if scene else "(an uploaded image: no reference)"
        return tensor_image(images, 256), text, reference, took

    with gr.Blocks(title="anytoken: captioning") as app:
        gr.Markdown("# Image captioning\nA built-in test scene is loaded: press **Caption**, or click "
                    "another scene (none was seen in training) or upload an image.")
        gr.Markdown(status)
        with gr.Row():
            with gr.Column():
                image = image_input(paths)
                thumbnails(paths, [image], label="Built-in test scenes (click one)")
                controls = decoding_controls()
                button = gr.Button("Caption", variant="primary")
            with gr.Column():
                seen = gr.Image(label="What the model sees", type="pil", interactive=False, height=256)
                text = gr.Textbox(label="Caption", interactive=False, elem_id="caption")
                reference = gr.Textbox(label="Reference caption (shown after captioning)", interactive=False,
                                       elem_id="reference")
                message = gr.Markdown()
        button.click(caption, [image, *controls], [seen, text, reference, message], api_name="caption")
    return app
