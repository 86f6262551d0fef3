"""Shared test fixtures: paths to the shared media and fixtures beside the checkout, a tiny model, and a
headless Chromium for the web page tests (`browser.py`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MEDIA = SHARED / "media"
FIXTURES = SHARED / "fixtures"


@pytest.fixture(scope="session")
def media_dir() -> Path:
    if not MEDIA.is_dir():
        pytest.fail(f"shared media not found at {MEDIA}: check out the project beside ../shared")
    return MEDIA


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"shared fixtures not found at {FIXTURES}: check out the project beside ../shared")
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight `StyleLipSyncConfig.tiny(64)` model directory (seed 0) shared by pipeline tests."""
    import torch

    from stylelipsync.models import StyleLipSync, StyleLipSyncConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_model")
    StyleLipSync(StyleLipSyncConfig.tiny(64)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Any]:
    """Playwright's driver for one test module (it runs an event loop of its own in this thread, so it is
    stopped before other modules' tests, which may run theirs); see `browser.py`."""
    from browser import playwright_driver

    with playwright_driver() as playwright:
        yield playwright


@pytest.fixture
def launch_chromium(playwright_driver: Any) -> Iterator[Callable[..., Any]]:
    """`launch_chromium(*extra_args)` → a headless system Chromium (Playwright `Browser`), closed after the
    test. Skipped with an install hint where Chromium or Playwright is missing; failed instead under CI."""
    from browser import launch

    browsers: list[Any] = []

    def start(*extra_args: str) -> Any:
        browsers.append(launch(playwright_driver, extra_args))
        return browsers[-1]

    yield start
    for browser in browsers:
        browser.close()
