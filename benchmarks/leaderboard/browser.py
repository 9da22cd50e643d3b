"""Headless Chromium helpers (Playwright driving the system ``chromium``), for tests and screenshots.

Needs the Debian packages ``chromium`` (and ``chromium-driver`` for Selenium users) and the
Python package ``playwright``; ``playwright install`` is not needed, the system browser is used.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> Path | None:
    """The system Chromium (``$CHROMIUM``, ``/usr/bin/chromium`` or ``chromium`` on PATH), if any."""
    for cand in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


def missing_requirements() -> str | None:
    """Why the browser cannot be driven here, or ``None`` when it can."""
    if chromium_path() is None:
        return "no Chromium at /usr/bin/chromium (apt-get install -y chromium chromium-driver)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright)"
    return None


def screenshot(site: Path, dest: Path, width: int = 1280, height: int = 820, max_kb: int = 120) -> Path:
    """Save a PNG of the overview page ``site/index.html`` (the top ``height`` pixels).

    The image is palette-quantised when it exceeds ``max_kb`` so that it stays small enough
    to commit.
    """
    from playwright.sync_api import sync_playwright

    reason = missing_requirements()
    if reason:
        raise RuntimeError(reason)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium_path()), args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto((site / "index.html").resolve().as_uri())
            page.wait_for_load_state("load")
            page.screenshot(path=str(dest), full_page=False)
        finally:
            browser.close()
    if dest.stat().st_size > max_kb * 1024:
        from PIL import Image

        with Image.open(dest) as img:
            img.convert("RGB").quantize(colors=128).save(dest, optimize=True)
    return dest
