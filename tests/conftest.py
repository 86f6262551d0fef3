"""Shared test fixtures: paths to the shared media and fixtures beside the checkout."""

from __future__ import annotations

from pathlib import Path

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
