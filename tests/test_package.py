"""The package installs and exposes its console script."""

from click.testing import CliRunner

import stylelipsync
from stylelipsync.cli import cli


def test_version_flag_prints_package_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert stylelipsync.__version__ in result.output
