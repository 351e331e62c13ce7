"""Drive the apps in a real browser: Debian's headless Chromium through Selenium and Debian's chromedriver,
for the browser tests (``tests/demos/test_browser.py``) and the screenshots (``demos/screenshots.py``).

Nothing downloads: Selenium gets the system browser and driver by path, so its driver manager never runs.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anytoken.atomic import atomic_path

CHROMIUM = ("chromium", "chromium-browser")  # Debian's and Ubuntu's names
CHROMEDRIVER = "chromedriver"
WINDOW = (1280, 1000)


def missing() -> str | None:
    """Why the browser cannot run here (one line naming what to install), or None when it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium, in the dev extra)"
    if not any(shutil.which(name) for name in CHROMIUM):
        return "Debian's chromium is not installed (apt-get install chromium)"
    if shutil.which(CHROMEDRIVER) is None:
        return "Debian's chromedriver is not installed (apt-get install chromium-driver)"
    return None


def start_browser(window: tuple[int, int] = WINDOW) -> Any:
    """A headless Chromium (a ``selenium.webdriver.Chrome``) with a throwaway profile; ``quit()`` it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    reason = missing()
    if reason is not None:
        raise RuntimeError(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = next(shutil.which(n) for n in CHROMIUM if shutil.which(n))
    profile = tempfile.mkdtemp(prefix="anytoken-chromium-")
    atexit.register(shutil.rmtree, profile, ignore_errors=True)  # Chromium writes it until quit()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--mute-audio", f"--user-data-dir={profile}",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",  # a beeping mic
                 f"--window-size={window[0]},{window[1]}"):
        options.add_argument(flag)
    service = Service(shutil.which(CHROMEDRIVER), env=os.environ | {"HOME": profile})
    return webdriver.Chrome(service=service, options=options)


def wait_for(driver: Any, check: Callable[[Any], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``check(driver)`` until it returns something truthy (returned); ``TimeoutError`` naming ``what``
    and the page's error toasts otherwise."""
    end = time.monotonic() + timeout
    while True:
        try:
            found = check(driver)
        except Exception:  # noqa: BLE001 - a stale or not yet rendered element: look again
            found = None
        if found:
            return found
        if time.monotonic() > end:
            toasts = [e.text for e in driver.find_elements("css selector", "[data-testid=toast-body]")]
            raise TimeoutError(f"waited {timeout:g} s for {what}; error messages in the page: {toasts}")
        time.sleep(0.1)


def open_app(driver: Any, url: str) -> None:
    """Load the app at ``url`` and wait until Gradio has rendered its buttons."""
    driver.get(url)
    wait_for(driver, lambda d: d.find_elements("css selector", "button.primary"), "the app to render")


def css(driver: Any, selector: str, timeout: float = 30.0) -> Any:
    """The first visible element matching ``selector`` (waits for it)."""
    return wait_for(driver, lambda d: next((e for e in d.find_elements("css selector", selector)
                                            if e.is_displayed()), None), f"an element {selector!r}", timeout)


def click(driver: Any, selector: str) -> None:
    """Click the first visible element matching ``selector`` (scrolled into view first)."""
    element = css(driver, selector)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def click_text(driver: Any, text: str, tag: str = "button") -> None:
    """Click the first visible ``tag`` element whose text is ``text`` (a tab, a button)."""
    element = wait_for(driver, lambda d: next((e for e in d.find_elements("tag name", tag)
                                               if e.is_displayed() and e.text.strip() == text), None),
                       f"a {tag} {text!r}")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def value_of(driver: Any, elem_id: str, wait: bool = True, timeout: float = 30.0) -> str:
    """The text of the textbox with ``elem_id``; with ``wait``, once it is not empty."""
    selector = f"#{elem_id} textarea, #{elem_id} input"
    if not wait:
        return css(driver, selector, timeout).get_property("value")
    return wait_for(driver, lambda d: d.find_element("css selector", selector).get_property("value"),
                    f"text in #{elem_id}", timeout)


def image_src(driver: Any, selector: str, timeout: float = 30.0) -> str:
    """The ``src`` of the first visible loaded image under ``selector`` (waits for one to load)."""
    def loaded(d: Any) -> str | None:
        for image in d.find_elements("css selector", f"{selector} img"):
            if image.is_displayed() and image.get_property("complete") and image.get_property("naturalWidth"):
                return image.get_attribute("src")
        return None

    return wait_for(driver, loaded, f"an image in {selector}", timeout)


def screenshot(driver: Any, path: str | Path, height: int | None = None) -> Path:
    """Save the page as a PNG at ``path``, the window first made tall enough for the whole page (at most
    ``height`` pixels when given)."""
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, WINDOW[1])  # a page is never shorter than the window: measure it there
    full = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(full + 120, height or full + 120))
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)  # let the layout settle
    with atomic_path(path) as tmp:
        if not driver.save_screenshot(str(tmp)):
            raise RuntimeError(f"chromium could not take the screenshot for {path}")
    return Path(path)
