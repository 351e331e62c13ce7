"""What a visitor does in each app, in a real browser (``demos/browser.py``): click a built-in example,
press the button, wait for the result. The browser tests assert on what each tour returns; the screenshot
script calls ``shoot(name)`` where a picture of the page is worth keeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from demos.browser import click, click_text, image_src, value_of, wait_for

Shoot = Callable[[str], None]  # called with a picture's name once the page shows a result


def _visible(driver: Any, selector: str) -> list[Any]:
    return [e for e in driver.find_elements("css selector", selector) if e.is_displayed()]


def _click_nth(driver: Any, selector: str, index: int) -> None:
    """Click the ``index``-th visible element matching ``selector`` (a thumbnail)."""
    items = wait_for(driver, lambda d: _visible(d, selector)[index:], f"{index + 1} elements {selector!r}")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", items[0])
    items[0].click()


def _audio_src(driver: Any, selector: str) -> str:
    """The address of the WAV file an audio player under ``selector`` plays, once it has one (Gradio's
    player decodes the file itself and offers it as a download link; its <audio> element stays empty)."""
    return wait_for(driver, lambda d: next((a.get_attribute("href") for a in d.find_elements(
        "css selector", f"{selector} a[href*='.wav']")), None), f"a WAV file in {selector!r}")


def _text(driver: Any, selector: str, contains: str) -> str:
    """The text of the first visible element under ``selector`` containing ``contains`` (waits for it)."""
    return wait_for(driver, lambda d: next((e.text for e in d.find_elements("css selector", selector)
                                            if e.is_displayed() and contains in e.text), None),
                    f"{contains!r} in {selector!r}")


def captioning(driver: Any, shoot: Shoot) -> dict[str, Any]:
    """Click the second scene, caption it: the caption, and the reference revealed after it."""
    _click_nth(driver, "#examples .gallery-item", 1)
    click_text(driver, "Caption")
    reference = value_of(driver, "reference")
    shoot("captioning")
    return {"reference": reference, "caption": value_of(driver, "caption", wait=False)}


def vqa(driver: Any, shoot: Shoot) -> dict[str, Any]:
    """Click the second scene (its question comes along), answer it: question, answer and truth."""
    _click_nth(driver, "#examples tbody tr", 1)  # examples of two inputs: a table of thumbnail + question
    click_text(driver, "Answer")
    truth = value_of(driver, "reference")
    shoot("vqa")
    read = {name: value_of(driver, name, wait=False) for name in ("question", "answer")}
    return read | {"truth": truth}


def tokenizers(driver: Any, shoot: Shoot) -> dict[str, Any]:
    """The image tab and the (first) audio tab: click the second example, tokenize; then record a second
    from the microphone and tokenize that: the token grids, the summaries and the reconstruction's sound."""
    out = {}
    for modality in ("image", "audio"):
        _tab(driver, modality)
        _click_nth(driver, f"#tokenize_{modality}_examples .thumbnail-item", 1)
        click_text(driver, "Tokenize")
        out[f"{modality}_grid"] = image_src(driver, ".token-grid")
        out[f"{modality}_summary"] = _text(driver, ".prose, .md", "tokens, shape")
        if modality == "audio":
            out["audio_src"] = _audio_src(driver, "body")  # the players of the audio tab
        shoot(f"tokenizers_{modality}")
    out["recorded_summary"] = _record(driver, out["audio_summary"])
    return out


def _record(driver: Any, before: str, seconds: float = 1.0) -> str:
    """Record ``seconds`` from the microphone (Chromium's fake device: a beep), tokenize the recording;
    the summary, once it differs from ``before``."""
    wavs = len(driver.find_elements("css selector", "a[href*='.wav']"))
    click(driver, "button[aria-label='Record audio']")
    click_text(driver, "Record")
    time.sleep(seconds)
    click_text(driver, "Stop")
    wait_for(driver, lambda d: len(d.find_elements("css selector", "a[href*='.wav']")) > wavs,
             "the recording to be uploaded")
    click_text(driver, "Tokenize")
    return wait_for(driver, lambda d: next((e.text for e in _visible(d, ".prose, .md")
                                            if "tokens, shape" in e.text and e.text != before), None),
                    "the recording's tokens")


def _tab(driver: Any, title_start: str) -> None:
    """Open the first tab whose title starts with ``title_start``."""
    tab = wait_for(driver, lambda d: next((b for b in d.find_elements("css selector", "button[role=tab]")
                                           if b.text.strip().startswith(title_start)), None),
                   f"a tab {title_start!r}")
    tab.click()


def generate(driver: Any, shoot: Shoot) -> dict[str, Any]:
    """Every tab: draw, speak, sample rows, estimate a pose (second figure), forecast (second scene)."""
    out = {}
    _tab(driver, "text -> image")
    click_text(driver, "Draw")
    out["drawn"] = image_src(driver, "#drawn")
    shoot("generate_image")
    _tab(driver, "text -> speech")
    click_text(driver, "Speak")
    out["speech"] = _audio_src(driver, "#speech")
    shoot("generate_speech")
    _tab(driver, "table rows")
    click_text(driver, "Sample rows")
    _text(driver, ".prose, .md", " rows in ")  # the message comes with the rows
    grid = driver.find_element("css selector", "#rows [role=grid]")  # a virtual table: count by its aria
    out["rows"] = int(grid.get_attribute("aria-rowcount")) - 1  # the header row is one of them
    shoot("generate_rows")
    _tab(driver, "pose")
    _click_nth(driver, "#pose_examples .gallery-item", 1)
    click_text(driver, "Estimate the pose")
    out["pose"] = image_src(driver, "#pose_drawn")
    shoot("generate_pose")
    _tab(driver, "forecast")
    _click_nth(driver, "#forecast_examples .thumbnail-item", 1)
    click_text(driver, "Forecast")
    out["forecast"] = image_src(driver, "#forecast_drawn")
    shoot("generate_forecast")
    return out


def anything(driver: Any, shoot: Shoot) -> dict[str, Any]:
    """Click the first stick figure, pick the pose task, run: the drawn keypoints and the message."""
    examples = len(_visible(driver, "#examples .gallery-item"))
    _click_nth(driver, "#examples .gallery-item", examples // 2)  # scenes first, then as many figures
    click(driver, "#task input")
    click_text(driver, "pose", tag="li")
    click_text(driver, "Run")
    out = {"image": image_src(driver, "#image_out"), "message": _text(driver, "#message", "done in")}
    shoot("anything")
    return out


TOURS: dict[str, Callable[[Any, Shoot], dict[str, Any]]] = {
    "captioning": captioning, "vqa": vqa, "tokenizers": tokenizers, "generate": generate,
    "anything": anything,
}
