"""Render a local HTML file in headless Chromium: its DOM after scripts ran, a screenshot, and the
JavaScript errors it logged. Used by the browser tests; no network is needed or used."""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

ERROR = re.compile(r"CONSOLE.*\"(Uncaught[^\"]*|[A-Za-z]*Error[^\"]*)\"")


@dataclass(frozen=True)
class Rendered:
    dom: str
    screenshot: Path
    js_errors: list[str]

    def ink(self) -> float:
        """Share of screenshot pixels that are not (near) white."""
        image = Image.open(self.screenshot).convert("L")
        histogram = image.histogram()
        return 1.0 - sum(histogram[245:]) / (image.width * image.height)


def _chromium(browser: str, page: Path, *flags: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=10000", *flags, page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip


def render(
    browser: str, page: Path, screenshot: Path, size: tuple[int, int] = (1100, 900)
) -> Rendered:
    dom = _chromium(browser, page, "--dump-dom")
    shot = _chromium(
        browser, page, f"--screenshot={screenshot}", f"--window-size={size[0]},{size[1]}"
    )
    errors = [m.group(1) for run in (dom, shot) for m in ERROR.finditer(run.stderr)]
    return Rendered(dom.stdout, screenshot, errors)
