"""Gradio app: ask a question about an image with a trained VQA model.

    anytoken demo vqa [--ckpt runs/vqa_scenes/release] [--port 7860]

The page opens with a built-in test scene and one of its questions loaded; click another thumbnail (each
comes with a question) or upload an image, ask, and get the answer (decoded by the LM head, or the top
class of the classification head), then the true answer when the question is one of the scene's own.
Without a model the app still starts and says how to train one; a file that is not an image gets a
message.
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

DEFAULT_CKPT = Path("runs/vqa_scenes/release")  # where configs/vqa_scenes.yaml writes its release
TRAIN_HINT = "anytoken fit --config configs/vqa_scenes.yaml"


def build_app(ckpt: str | Path | None = None, num_examples: int = 8) -> gr.Blocks:
    """The VQA app; the model at ``ckpt`` (default ``DEFAULT_CKPT``) is loaded once, here.

    Args:
        ckpt: a release directory or ``.ckpt`` file of a VQA model.
        num_examples: built-in test scenes offered as examples (one question each).
    """
    model, status = load_task_model(ckpt or DEFAULT_CKPT, "vqa", TRAIN_HINT)
    paths, scenes = zip(*example_scenes(num_examples)) if num_examples else ((), ())
    scene_of = recogniser(paths, scenes)
    questions = [scene.questions()[i % len(scene.questions())].question for i, scene in enumerate(scenes)]

    def answer(file: str | None, question: str, *decoding: Any) -> tuple[Any, str, str, str]:
        if model is None:
            return None, "", "", status
        images, image, problem = read_image(file, model)
        if images is None:
            return None, "", "", problem
        if not question or not question.strip():
            return None, "", "", "Type a question first."
        try:
            config = decoding_config(*decoding)
        except ValueError as err:
            return None, "", "", f"**Bad decoding settings:** {err}"
        start = time.perf_counter()
        text = model.ask(images, [question], decoding=config)[0]
        classify = model.task_format("vqa").head == "classify"
        how = "classification head" if classify else f"generative head, {config.strategy}"
        took = f"Answered in {1000 * (time.perf_counter() - start):.0f} ms ({how})."
        scene = scene_of(image)
        truth = [qa.answer for qa in scene.questions() if qa.question == question.strip()] if scene else []
        reference = truth[0] if truth else "(not a built-in scene's own question: no reference)"
        return tensor_image(images, 256), text, reference, took

    with gr.Blocks(title="anytoken: visual question answering") as app:
        gr.Markdown("# Visual question answering\nA built-in test scene and a question are loaded: press "
                    "**Answer**, or click another scene (none was seen in training), upload an image, or "
                    "type your own question.")
        gr.Markdown(status)
        with gr.Row():
            with gr.Column():
                image = image_input(paths)
                question = gr.Textbox(value=questions[0] if questions else "", label="Question",
                                      placeholder="what color is the circle?", elem_id="question")
                thumbnails(paths, [image, question], [[q] for q in questions],
                           label="Built-in test scenes with a question (click one)")
                controls = decoding_controls()
                button = gr.Button("Answer", variant="primary")
            with gr.Column():
                seen = gr.Image(label="What the model sees", type="pil", interactive=False, height=256)
                text = gr.Textbox(label="Answer", interactive=False, elem_id="answer")
                reference = gr.Textbox(label="True answer (shown after answering)", interactive=False,
                                       elem_id="reference")
                message = gr.Markdown()
        outputs = [seen, text, reference, message]
        button.click(answer, [image, question, *controls], outputs, api_name="answer")
    return app
