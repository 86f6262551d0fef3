"""`load_engine(spec, device)`: the one place an engine (and with it a model) is built from a spec.

`LipSyncPipeline.from_spec` / `from_pretrained` call it, and through them `generate`, `batch` (here and on
Ray actors) and the service's workers. The engine's class is imported here, when it is built, and nowhere
above the engines: so `stylelipsync.pipelines.engines` (names, spec, interface) never imports an engine
package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from stylelipsync.pipelines.engines.base import Engine
from stylelipsync.pipelines.engines.registry import REGISTRY, check_engine
from stylelipsync.pipelines.engines.spec import EngineSpec

if TYPE_CHECKING:
    import torch


def engine_class(name: str) -> type[Engine]:
    """The `Engine` subclass registered as `name` (importing its package)."""
    module_name, _, attr = REGISTRY[check_engine(name)].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise TypeError(f"engines.registry: {REGISTRY[name]} is not an Engine subclass; fix its entry")
    return cls


def load_engine(spec: EngineSpec, device: str | torch.device | None = None) -> Engine:
    """Build the engine `spec` describes, loading its model if it has one; `device` ("auto", "cpu", "cuda" or
    a `torch.device`; None = "auto") is where a network runs, and is not even resolved by an engine without
    one."""
    return engine_class(spec.name).from_spec(spec, device)
