"""Pieces every `stylelipsync` sub-command shares: the user-error wrapper and the option groups for engine,
model, face and network address.

Sub-command modules import from here, never from `stylelipsync.cli`; the root group in `stylelipsync.cli`
imports the sub-commands and registers them (one direction: root → sub).
Imports neither torch nor any sub-package.
"""

from __future__ import annotations

import ipaddress
import sys
import traceback
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from stylelipsync.errors import StyleLipSyncError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn project errors into a one-line message and exit code; keep tracebacks for `--debug`."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return func(*args, **kwargs)
        except StyleLipSyncError as exc:
            if debug:
                traceback.print_exc()
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.secho("interrupted: no output was written", fg="yellow", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _parse_bbox(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        box = tuple(int(float(v)) for v in value.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise click.BadParameter("expected X0,Y0,X1,Y1 in pixels of the first frame, e.g. 100,80,420,460")
    return box


ENGINE_NAMES = ("bank", "stylelipsync")
"""The `--engine` choices (`stylelipsync.engines.ENGINES`, repeated here so that the CLI imports no torch)."""


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--engine``, ``--checkpoint/-c``, ``--w-avg`` and ``--device``: how a command renders and which model
    it loads, shared by every command that runs the pipeline (generate, batch, serve). Resolve them with
    `resolve_engine`."""
    func = click.option(
        "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
    )(func)
    func = click.option(
        "--w-avg",
        type=click.Path(path_type=Path),
        help="Official w_avg.pth to go with an official .pth checkpoint.",
    )(func)
    func = click.option(
        "--checkpoint",
        "-c",
        type=click.Path(path_type=Path),
        help="StyleLipSync model directory, or an official .pth (with --w-avg): selects the stylelipsync "
        "engine.",
    )(func)
    return click.option(
        "--engine",
        type=click.Choice(ENGINE_NAMES),
        help="Renderer. bank: real mouths from the person's own video, chosen by the speech (the default "
        "without --checkpoint). stylelipsync: the network (the default with --checkpoint; the shipped demo "
        "model without one).",
    )(func)


def face_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--face-index`` and ``--bbox``: which face to dub, shared by every command that tracks one."""
    func = click.option(
        "--bbox", callback=_parse_bbox, help="X0,Y0,X1,Y1: dub the face inside this box of the first frame."
    )(func)
    return click.option(
        "--face-index", type=click.IntRange(0), help="With several faces: 0 = largest, 1 = next largest, …"
    )(func)


def resolve_engine(engine: str | None, checkpoint: Path | None, w_avg: Path | None) -> str:
    """The engine a command renders with: `--engine`, else stylelipsync with `--checkpoint` and bank
    without; a usage error for combinations that mean nothing."""
    if engine == "bank" and checkpoint is not None:
        raise click.UsageError(
            "--engine bank renders from the video itself and loads no model: drop --checkpoint, or use "
            "--engine stylelipsync to render with that model"
        )
    if w_avg is not None and checkpoint is None:
        raise click.UsageError("--w-avg goes with an official .pth --checkpoint; give both or neither")
    return engine or ("stylelipsync" if checkpoint is not None else "bank")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def address_options(default_port: int) -> Callable[[F], F]:
    """``--host`` (loopback by default) and ``--port``: where a server command listens (serve, live)."""

    def decorate(func: F) -> F:
        func = click.option("--port", type=click.IntRange(0, 65535), default=default_port, show_default=True)(
            func
        )
        return click.option(
            "--host",
            default="127.0.0.1",
            show_default=True,
            help="Address to listen on (loopback; another address serves the whole network).",
        )(func)

    return decorate
