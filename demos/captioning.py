"""Gradio app: caption an image with a trained captioner.

    anytoken demo captioning [--ckpt runs/caption_scenes/release] [--port 7860]

Upload an image file or pick one of the built-in test scenes (never seen in training), set the decoding
strategy, and get the caption. Without a model (no checkpoint at the path) the app still starts and says
how to train one; a file that is not an image gets a message, not an error.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr

from demos.widgets import decoding_config, decoding_controls, example_scenes, load_task_model, read_image

DEFAULT_CKPT = Path("runs/caption_scenes/release")  # where the quickstart writes its release
TRAIN_HINT = "anytoken fit --config configs/caption_scenes.yaml"


def build_app(ckpt: str | Path | None = None, num_examples: int = 6) -> gr.Blocks:
    """The captioning app; the model at ``ckpt`` (default ``DEFAULT_CKPT``) is loaded once, here.

    Args:
        ckpt: a release directory or ``.ckpt`` file of a ``CaptioningModule``.
        num_examples: built-in test scenes offered as examples.
    """
    model, status = load_task_model(ckpt or DEFAULT_CKPT, "caption", TRAIN_HINT)

    def caption(file: str | None, *decoding: Any) -> tuple[Any, str, str]:
        if model is None:
            return None, "", status
        images, image, problem = read_image(file, model)
        if images is None:
            return None, "", problem
        try:
            config = decoding_config(*decoding)
        except ValueError as err:
            return image, "", f"**Bad decoding settings:** {err}"
        start = time.perf_counter()
        text = model.caption(images, config)[0]
        return image, text, f"Captioned in {1000 * (time.perf_counter() - start):.0f} ms ({config.strategy})."

    with gr.Blocks(title="anytoken: captioning") as app:
        gr.Markdown("# Image captioning\nUpload an image or pick a built-in test scene, then **Caption**.")
        gr.Markdown(status)
        with gr.Row():
            with gr.Column():
                file = gr.File(label="Image file", file_types=["image"], type="filepath")
                examples = example_scenes(num_examples)
                gr.Examples([[path] for path, _ in examples], inputs=[file], label="Built-in test scenes",
                            example_labels=[f"reference: {scene.caption()}" for _, scene in examples])
                controls = decoding_controls()
                button = gr.Button("Caption", variant="primary")
            with gr.Column():
                shown = gr.Image(label="Image", type="pil", interactive=False)
                text = gr.Textbox(label="Caption", interactive=False)
                message = gr.Markdown()
        button.click(caption, [file, *controls], [shown, text, message], api_name="caption")
    return app
