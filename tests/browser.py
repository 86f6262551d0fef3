"""Headless Chromium for tests of the web pages: the system browser (Debian's `chromium` package, which
`.ci/run` installs when it is missing) driven by Playwright-for-Python. No browser is ever downloaded:
`playwright install` is not needed and not used.

Where the browser or Playwright is missing, a test that asks for it is skipped with a message saying how to
install them; under CI (the environment variable CI set to anything but "" / "0" / "false", as `.ci/run` runs)
it fails instead, so that a broken install can never pass as a skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

CHROMIUM_ENV = "STYLELIPSYNC_CHROMIUM"
"""Environment variable naming another Chromium executable than the system one."""
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
BASE_ARGS = (
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
)
"""Flags of every launch: no sandbox (root), no GPU, no network of the browser's own."""
INSTALL_HINT = (
    "install them with `apt-get install -y chromium` (Debian/Ubuntu; `bash .ci/run` does it) and "
    '`pip install -e ".[test]"` (Playwright-for-Python; do not run `playwright install`), or point '
    f"{CHROMIUM_ENV} at a Chromium executable"
)


def in_ci() -> bool:
    """True when the tests run under CI (`CI` set, as CI services and `.ci/run` do)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chromium_executable() -> str | None:
    """The Chromium to drive: $STYLELIPSYNC_CHROMIUM, else the first of `CHROMIUM_NAMES` on the PATH."""
    chosen = os.environ.get(CHROMIUM_ENV)
    if chosen:
        return chosen if Path(chosen).is_file() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def unavailable(reason: str) -> NoReturn:
    """Skip the test (fail it under CI): the browser cannot be used here."""
    message = f"headless browser test: {reason}; {INSTALL_HINT}"
    if in_ci():
        pytest.fail(f"{message} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(message)


@contextmanager
def playwright_driver() -> Iterator[Any]:
    """Playwright's driver (one per test session: it cannot be started twice at once in a thread).
    Skips (fails under CI) when Playwright-for-Python is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright-for-Python is not installed")
    with sync_playwright() as playwright:
        yield playwright


def launch(playwright: Any, extra_args: Sequence[str] = ()) -> Any:
    """A headless Chromium (a Playwright `Browser`) with `BASE_ARGS` and `extra_args`, e.g.
    `--use-fake-device-for-media-stream`, `--use-file-for-fake-audio-capture=<wav>`; the caller closes it.
    Skips (fails under CI) when no Chromium is found or it does not start."""
    from playwright.sync_api import Error

    executable = chromium_executable()
    if executable is None:
        if os.environ.get(CHROMIUM_ENV):
            unavailable(f"{CHROMIUM_ENV}={os.environ[CHROMIUM_ENV]} is not a file")
        unavailable(
            f"no Chromium found ({CHROMIUM_ENV} unset, none of {', '.join(CHROMIUM_NAMES)} on the PATH)"
        )
    try:
        return playwright.chromium.launch(
            executable_path=executable, headless=True, args=[*BASE_ARGS, *extra_args]
        )
    except Error as exc:
        unavailable(f"{executable} does not start ({str(exc).splitlines()[0]})")
