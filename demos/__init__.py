"""The Gradio apps (``anytoken demo NAME``): one app per module, each with ``build_app() -> gr.Blocks``."""
