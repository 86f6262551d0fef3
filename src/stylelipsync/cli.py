"""Command-line entry point: `stylelipsync <command>`."""

from __future__ import annotations

import click

from stylelipsync import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stylelipsync")
def cli() -> None:
    """Dub a talking-face video to new speech (StyleLipSync)."""


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
