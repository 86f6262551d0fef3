"""The engines by name: where each one's class lives, as a "module:Class" string.

Only strings here, so that naming and checking an engine (`GenerateOptions`, the CLI, the jobs CSV) imports
no engine, and no engine's dependencies (PyTorch for the network). `loader.load_engine` imports the class when
an engine is built. A new engine is one new folder under `engines/` and one line in `REGISTRY`.
"""

from __future__ import annotations

REGISTRY: dict[str, str] = {
    "bank": "stylelipsync.pipelines.engines.bank:MouthBankEngine",
    "stylelipsync": "stylelipsync.pipelines.engines.stylelipsync.engine:StyleLipSyncEngine",
}
"""Engine name → "module:Class" of its `Engine` subclass."""

ENGINES = tuple(REGISTRY)
DEFAULT_ENGINE = "bank"
"""The engine without a checkpoint: it needs no model weights but the small shipped ones."""


def check_engine(name: str) -> str:
    """The engine name, or `ValueError` listing the valid ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
    return name
