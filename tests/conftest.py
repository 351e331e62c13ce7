"""Shared fixtures: tiny tokenizers, spaces and models built in code (nothing downloads)."""

from __future__ import annotations

import os

import pytest
import torch

# No test may reach a hub or phone home: set before anything imports huggingface_hub or gradio.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CAPTIONS = [
    "a small red square at the top left",
    "a large blue circle in the center",
    "a small green triangle on the right and a large white diamond at the bottom",
    "a large yellow square on the left",
] * 20


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One intra-op thread: tiny convolutions run faster, and several times faster on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def bpe():
    from anytoken.tokenizers import BPETokenizer

    return BPETokenizer.train(CAPTIONS, vocab_size=300)


@pytest.fixture(scope="session")
def space(bpe):
    from anytoken.tokenizers import TokenSpace

    return TokenSpace({"text": bpe.vocab_size, "image": 16}, tasks=("caption", "vqa"))


@pytest.fixture
def tiny_model(space):
    from anytoken.backbone import CausalTransformer, TransformerConfig
    from anytoken.heads import LMHead

    model = CausalTransformer(TransformerConfig.from_name("tiny", vocab_size=space.vocab_size)).eval()
    return model, LMHead(model)


@pytest.fixture(scope="session")
def repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]
