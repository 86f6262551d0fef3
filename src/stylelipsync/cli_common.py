"""Pieces every `stylelipsync` sub-command shares: the user-error wrapper, the generate options as click
options (`generate_option`, built from `GenerateOptions`' specs) and the option groups for engine, model, face
and network address.

Sub-command modules import from here, never from `stylelipsync.cli`; the root group in `stylelipsync.cli`
imports the sub-commands and registers them (one direction: root → sub).
Imports no torch and, of the package, only the option definitions (`stylelipsync.pipelines.options`).
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
from stylelipsync.pipelines.options import (
    OPTION_SPECS,
    Box,
    FilePath,
    FilePaths,
    GenerateOptions,
    Number,
    OneOf,
    OptionError,
    OptionSpec,
    Whole,
    YesNo,
)

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


class OptionValue(click.ParamType):
    """A generate option's command-line value, read by the option's spec: a bad value gets the same message
    as in a service form field or a jobs CSV cell (click prefixes "Invalid value for '--NAME'")."""

    def __init__(self, option: str, spec: OptionSpec) -> None:
        self.option, self.spec = option, spec
        self.name = "integer" if isinstance(spec, Whole) else "float" if isinstance(spec, Number) else "text"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        if isinstance(self.spec, OneOf):
            return f"[{'|'.join(self.spec.choices)}]"
        return "X0,Y0,X1,Y1" if isinstance(self.spec, Box) else None

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.spec.parse(self.option, str(value))
        except OptionError as exc:
            self.fail(str(exc), param, ctx)

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[click.shell_completion.CompletionItem]:
        choices = self.spec.choices if isinstance(self.spec, OneOf) else ()
        return [click.shell_completion.CompletionItem(c) for c in choices if c.startswith(incomplete.lower())]


_DEFAULTS = GenerateOptions()


def generate_option(name: str) -> Callable[[F], F]:
    """The click option ``--NAME`` for generate option `name`: type, range, default and help from
    `GenerateOptions`. Yes/no options become flags (``--trim/--no-trim`` when on by default), path lists a
    repeatable option."""
    spec, default = OPTION_SPECS[name], getattr(_DEFAULTS, name)
    flag = "--" + name.replace("_", "-")
    if isinstance(spec, YesNo):
        if default:
            return click.option(f"{flag}/--no-{flag[2:]}", default=True, show_default=True, help=spec.help)
        return click.option(flag, is_flag=True, help=spec.help)
    if isinstance(spec, FilePath | FilePaths):
        many = isinstance(spec, FilePaths)
        return click.option(flag, type=click.Path(path_type=Path), multiple=many, help=spec.help)
    ranged = f" ({spec.expect})" if isinstance(spec, Whole | Number) else ""
    return click.option(
        flag,
        type=OptionValue(name, spec),
        default=None if default is None else str(default),
        show_default=default is not None,
        help=spec.help + ranged,
    )


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
    return generate_option("engine")(func)


def face_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--face-index`` and ``--bbox``: which face to dub, shared by every command that tracks one."""
    return generate_option("face_index")(generate_option("bbox")(func))


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
