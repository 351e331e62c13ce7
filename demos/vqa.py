"""Gradio app: ask a question about an image with a trained VQA model.

    anytoken demo vqa [--ckpt runs/vqa_scenes/release] [--port 7860]

Upload an image file or pick a built-in test scene with one of its questions, and get the answer
(decoded by the LM head, or the top class of the classification head with its probability). Without
a model the app still starts and says how to train one; a file that is not an image gets a message.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr

from demos.widgets import decoding_config, decoding_controls, example_scenes, load_task_model, read_image

DEFAULT_CKPT = Path("runs/vqa_scenes/release")  # where configs/vqa_scenes.yaml writes its release
TRAIN_HINT = "anytoken fit --config configs/vqa_scenes.yaml"


def build_app(ckpt: str | Path | None = None, num_examples: int = 6) -> gr.Blocks:
    """The VQA app; the model at ``ckpt`` (default ``DEFAULT_CKPT``) is loaded once, here.

    Args:
        ckpt: a release directory or ``.ckpt`` file of a ``VQAModule``.
        num_examples: built-in test scenes offered as examples (one question each).
    """
    model, status = load_task_model(ckpt or DEFAULT_CKPT, "vqa", TRAIN_HINT)

    def answer(file: str | None, question: str, *decoding: Any) -> tuple[Any, str, str]:
        if model is None:
            return None, "", status
        images, image, problem = read_image(file, model)
        if images is None:
            return None, "", problem
        if not question or not question.strip():
            return image, "", "Type a question first."
        try:
            config = decoding_config(*decoding)
        except ValueError as err:
            return image, "", f"**Bad decoding settings:** {err}"
        start = time.perf_counter()
        text = model.ask(images, [question], decoding=config)[0]
        classify = model.task_format("vqa").head == "classify"
        how = "classification head" if classify else f"generative head, {config.strategy}"
        return image, text, f"Answered in {1000 * (time.perf_counter() - start):.0f} ms ({how})."

    with gr.Blocks(title="anytoken: visual question answering") as app:
        gr.Markdown("# Visual question answering\nUpload an image or pick a built-in test scene and ask.")
        gr.Markdown(status)
        with gr.Row():
            with gr.Column():
                file = gr.File(label="Image file", file_types=["image"], type="filepath")
                question = gr.Textbox(label="Question", placeholder="what color is the circle?")
                picks = [(path, scene.questions()[i % len(scene.questions())])
                         for i, (path, scene) in enumerate(example_scenes(num_examples))]
                labels = [f"{qa.question} (truth: {qa.answer})" for _, qa in picks]
                gr.Examples([[path, qa.question] for path, qa in picks], inputs=[file, question],
                            label="Built-in test scenes", example_labels=labels)
                controls = decoding_controls()
                button = gr.Button("Answer", variant="primary")
            with gr.Column():
                shown = gr.Image(label="Image", type="pil", interactive=False)
                text = gr.Textbox(label="Answer", interactive=False)
                message = gr.Markdown()
        button.click(answer, [file, question, *controls], [shown, text, message], api_name="answer")
    return app
