"""The demo tests' shared fixtures: tiny releases built once per session, one torch thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_releases import TINY, anything_model, generation_model, scene_vocab, serve, tiny_codec


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    """Tiny models: one thread is faster, and on a shared CPU far faster (no OpenMP barrier stalls)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Release directories: ``captioning``, ``vqa`` (generative head), ``vqa_classify`` and ``generation``
    (text-to-image, text-to-speech, table rows, pose, forecast in one model); untrained."""
    from anytoken.tasks.captioning import CaptioningModule
    from anytoken.tasks.vqa import VQAModule

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("releases")
    vocab = scene_vocab()
    return {
        "captioning": CaptioningModule(vocab, **TINY).export(root / "caption"),
        "vqa": VQAModule(vocab, head="generate", **TINY).export(root / "vqa"),
        "vqa_classify": VQAModule(vocab, head="classify", **TINY).export(root / "vqa_classify"),
        "generation": generation_model().save_pretrained(root / "generation"),
    }


@pytest.fixture(scope="session")
def anything_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained any-to-any release (caption, pose, table prediction, forecast)."""
    torch.manual_seed(0)
    return anything_model().export(tmp_path_factory.mktemp("releases") / "anything")


@pytest.fixture(scope="session")
def codec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny untrained audio codec (``--tokenizer DIR``)."""
    path = tmp_path_factory.mktemp("codec") / "codec"
    tiny_codec().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def served() -> Iterator[Callable[..., tuple[Any, str]]]:
    """``served(name, **build)``: app ``name`` built with ``build``, served once per session for the client
    and the browser tests alike; ``(gradio_client.Client, url)``."""
    from anytoken.cli import load_demo

    apps: dict[str, tuple[Any, Any, str]] = {}

    def get(name: str, **build: Any) -> tuple[Any, str]:
        key = f"{name}{sorted(build.items())}"
        if key not in apps:
            app = load_demo(name).build_app(**build)
            apps[key] = (app, *serve(app))
        return apps[key][1:]

    yield get
    for app, _, _ in apps.values():
        app.close()
