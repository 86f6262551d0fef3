"""`EngineSpec`: which engine to build and with what, as plain values.

A spec is what crosses process boundaries instead of a loaded model: the service hands one to its worker
processes, a Ray pool to its actors, and each builds the engine where it runs (`loader.load_engine`). It is
frozen and pickles.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from stylelipsync.errors import CheckpointError
from stylelipsync.pipelines.engines.registry import DEFAULT_ENGINE, check_engine


@dataclass(frozen=True)
class EngineSpec:
    """Engine `name`; for the stylelipsync engine also its weights (`checkpoint`: a model directory or an
    official .pth, with `w_avg` for the latter; None = the shipped demo model) and how the network runs
    (`precision`, `compile`: see `models.runtime.InferenceRunner`). The bank engine's spec is just its name.
    """

    name: str = DEFAULT_ENGINE
    checkpoint: Path | None = None
    w_avg: Path | None = None
    precision: str = "fp32"
    compile: bool | str = False

    def __post_init__(self) -> None:
        check_engine(self.name)
        if self.w_avg is not None and self.checkpoint is None:
            raise CheckpointError(
                f"w_avg ({self.w_avg}) goes with an official .pth checkpoint; give the .pth too"
            )
        if self.checkpoint is not None and self.name == "bank":
            raise CheckpointError(
                "--checkpoint selects the stylelipsync engine; drop it to use the bank engine"
            )

    @classmethod
    def resolve(
        cls,
        engine: str | None = None,
        checkpoint: str | Path | None = None,
        w_avg: str | Path | None = None,
        precision: str = "fp32",
        compile: bool | str = False,
    ) -> EngineSpec:
        """The spec for what a user gave: `engine`, else stylelipsync with a checkpoint and bank without."""
        if engine is not None:
            check_engine(engine)
        name = engine or ("stylelipsync" if checkpoint is not None else DEFAULT_ENGINE)
        return cls(
            name,
            Path(checkpoint) if checkpoint is not None else None,
            Path(w_avg) if w_avg is not None else None,
            precision,
            compile,
        )

    def absolute(self) -> EngineSpec:
        """The same spec with absolute paths: for a process that may run in another folder or node."""
        return replace(
            self,
            checkpoint=Path(os.path.abspath(self.checkpoint)) if self.checkpoint is not None else None,
            w_avg=Path(os.path.abspath(self.w_avg)) if self.w_avg is not None else None,
        )
