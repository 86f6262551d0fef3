"""Dataclass configurations for the trainers, loadable from YAML and saved with every checkpoint.

Every trainer has one top-level dataclass whose fields are plain values or nested dataclasses. YAML files may
give any subset of the fields; unknown keys are rejected so that a typo does not silently fall back to a
default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Turn a YAML value into the annotated type (nested dataclasses, tuples, optionals)."""
    if value is None:
        return None
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(members[0], value, where) if len(members) == 1 else value
    if origin is tuple:
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v, where) for v in value)
    if origin is list:
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return [_coerce(inner, v, where) for v in value]
    if tp is float and isinstance(value, int | float | str):
        return float(value)
    if tp is int and isinstance(value, int | float) and float(value).is_integer():
        return int(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a (possibly partial) nested dict; unknown keys raise ``ValueError``."""
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) suitable for YAML or JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def merge(config: T, overrides: dict[str, Any]) -> T:
    """Return a copy of ``config`` with nested ``overrides`` applied (same validation as ``from_dict``)."""
    base = to_dict(config)

    def deep(dst: dict[str, Any], src: dict[str, Any]) -> None:
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                deep(dst[k], v)
            else:
                dst[k] = v

    deep(base, overrides)
    return from_dict(type(config), base)


def load_yaml(cls: type[T], path: str | Path, base: T | None = None) -> T:
    """Read a YAML file into ``cls``, starting from ``base`` (or the class defaults)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level of a config must be a mapping")
    return merge(base if base is not None else cls(), data)


def save_yaml(config: Any, path: str | Path) -> None:
    """Write ``config`` as YAML (keys in declaration order)."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


@dataclass
class TrainerConfig:
    """Loop settings shared by all trainers (per-process batch size; steps count optimiser updates).

    ``torch_threads`` > 0 pins the intra-op threads of each process (1 is much faster on a busy CPU, where
    OpenMP threads otherwise wait for each other); 0 keeps PyTorch's default.
    """

    steps: int = 10_000
    batch_size: int = 8
    grad_accum: int = 1
    seed: int = 0
    num_workers: int = 2
    mixed_precision: str = "no"
    log_every: int = 50
    image_every: int = 500
    val_every: int = 1_000
    checkpoint_every: int = 1_000
    keep_last: int = 3
    grad_clip: float = 0.0
    lr_warmup_steps: int = 0
    lr_schedule: str = "constant"
    torch_threads: int = 0

    def __post_init__(self) -> None:
        if self.mixed_precision not in ("no", "bf16"):
            raise ValueError(f"mixed_precision must be 'no' or 'bf16', got {self.mixed_precision!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        for name in ("steps", "batch_size", "grad_accum", "log_every", "checkpoint_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"trainer.{name} must be >= 1, got {getattr(self, name)}")
