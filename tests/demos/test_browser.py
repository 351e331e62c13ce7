"""Every app clicked through in a real browser (Debian's headless chromium + chromedriver, via Selenium):
a built-in example clicked, the button pressed, and the caption / answer / token grid / sound / pictures
checked in the page (``demos/tours.py``). Skipped, with the reason, only where the browser is missing."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("gradio")

from anytoken.cli import load_demo  # noqa: E402
from anytoken.tasks.data.synthetic.scenes import make_scenes  # noqa: E402

load_demo("captioning")  # registers the source checkout's demos package (not installed)
from demos import browser, tours  # noqa: E402

pytestmark = pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    chrome = browser.start_browser()
    yield chrome
    chrome.quit()


@pytest.fixture
def tour(driver, served):  # noqa: ANN001, ANN201 - (name, **build) -> what the tour saw
    """Open app ``name`` built with ``build`` (served once per session) and take its tour."""
    def take(name: str, **build: Any) -> dict[str, Any]:
        browser.open_app(driver, served(name, **build)[1])
        return tours.TOURS[name](driver, lambda shot: None)

    return take


def _is_wav(url: str) -> bool:
    """Whether ``url`` (a player's file, served by the app) holds a WAV file."""
    with urllib.request.urlopen(url, timeout=10) as response:
        head = response.read(12)
    return head[:4] == b"RIFF" and head[8:12] == b"WAVE"


def test_captioning_in_the_browser(tour, releases) -> None:
    seen = tour("captioning", ckpt=releases["captioning"], num_examples=3)
    assert seen["reference"] == make_scenes("test", 2)[1].caption()  # the clicked scene's reference
    assert seen["caption"].strip()  # an untrained model's words, but words


def test_vqa_in_the_browser(tour, releases) -> None:
    seen = tour("vqa", ckpt=releases["vqa_classify"], num_examples=3)
    scene = make_scenes("test", 2)[1]
    qa = scene.questions()[1 % len(scene.questions())]  # the app's question for its second scene
    assert seen["question"] == qa.question and seen["truth"] == qa.answer
    assert seen["answer"] in {"yes", "no", "red"}  # the classification head's answers


def test_tokenizers_in_the_browser(tour, releases, codec_dir) -> None:
    seen = tour("tokenizers", ckpt=releases["captioning"], tokenizer_dirs=[str(codec_dir)])  # codec, mu-law
    assert seen["image_grid"] and "64 tokens" in seen["image_summary"]  # 8 x 8 VQ ids
    assert seen["audio_grid"] and _is_wav(seen["audio_src"])
    assert all(word in seen["audio_summary"] for word in ("kbps", "SI-SNR", "mel distance"))
    assert "tokens, shape (1, 4, " in seen["recorded_summary"]  # the recording, as codec frames


def test_generation_in_the_browser(tour, releases) -> None:
    seen = tour("generate", ckpt=releases["generation"])
    assert seen["drawn"] and _is_wav(seen["speech"]) and seen["pose"] and seen["forecast"]
    assert seen["rows"] == 10  # the default number of rows


def test_anything_in_the_browser(tour, anything_release) -> None:
    seen = tour("anything", ckpt=anything_release)
    assert seen["image"] and "pose: done in" in seen["message"]
