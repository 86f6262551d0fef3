"""One definition of the generate options (#22): a value written as text gets the same decision and, when it
is refused, the same message from every entry point that takes it: `stylelipsync generate` and
`stylelipsync batch` (click options), the service's form (the real POST /v1/jobs route) and a jobs CSV
(`read_jobs`). Nothing here decodes media or loads a model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from stylelipsync.batch.cli import batch
from stylelipsync.batch.jobs import read_jobs
from stylelipsync.cli import cli, generate
from stylelipsync.pipelines.options import OPTION_SPECS, GenerateOptions, parse_option
from stylelipsync.serve.app import FORM_OPTIONS, create_app
from stylelipsync.serve.checks import CheckedInputs, InputRejectedError
from stylelipsync.serve.db import JobStore
from stylelipsync.serve.service import JobService, ServeSettings

REFUSED = {
    ("fps", "0"): "fps must be a number from 1 to 120; got '0'",
    ("fps", "121"): "fps must be a number from 1 to 120; got '121'",
    ("fps", "241"): "fps must be a number from 1 to 120; got '241'",
    ("fps", "abc"): "fps must be a number from 1 to 120; got 'abc'",
    ("batch_size", "0"): "batch_size must be a whole number from 1 to 64; got '0'",
    ("batch_size", "65"): "batch_size must be a whole number from 1 to 64; got '65'",
    ("batch_size", "300"): "batch_size must be a whole number from 1 to 64; got '300'",
    ("batch_size", "8.5"): "batch_size must be a whole number from 1 to 64; got '8.5'",
    ("loop", "sideways"): "loop must be pingpong, forward or hold; got 'sideways'",
    ("engine", "wav2lip"): "engine must be bank or stylelipsync; got 'wav2lip'",
    ("face_index", "-1"): "face_index must be a whole number, 0 or more; got '-1'",
    ("reference_frame", "first"): "reference_frame must be a whole number, 0 or more; got 'first'",
    ("bbox", "5,5,1,1"): "bbox must be X0,Y0,X1,Y1 in pixels with X1 > X0 and Y1 > Y0, e.g. 100,80,420,460; "
    "got '5,5,1,1'",
    ("keep_silence", "maybe"): "keep_silence must be true or false (also yes/no, y/n, on/off, 1/0); "
    "got 'maybe'",
    ("trim", "2"): "trim must be true or false (also yes/no, y/n, on/off, 1/0); got '2'",
}
ACCEPTED = {
    ("fps", "1"): 1.0,
    ("fps", "120"): 120.0,
    ("fps", "12.5"): 12.5,
    ("batch_size", "1"): 1,
    ("batch_size", "64"): 64,
    ("loop", "hold"): "hold",
    ("loop", "Forward"): "forward",
    ("engine", "stylelipsync"): "stylelipsync",
    ("face_index", "2"): 2,
    ("reference_frame", "0"): 0,
    ("bbox", "10,20,110,140"): (10, 20, 110, 140),
    ("keep_silence", "yes"): True,
    ("keep_silence", "Y"): True,
    ("keep_silence", "0"): False,
    ("trim", "yes"): True,
    ("trim", "Y"): True,
    ("trim", "0"): False,
}
YES_NO = {"trim", "keep_silence", "overwrite"}
"""On the command line these are flags (no text to read): `test_yes_no_flags_...` covers them there."""
BATCH_CLI = {"batch_size", "fps", "loop", "engine"}
"""The text-valued generate options `stylelipsync batch` takes on its command line."""


class OptionsOnlyService(JobService):
    """The service behind the real routes, stopped right after the form's options were read: `check`
    (the checker process's work) records them and refuses the upload, so nothing is decoded or queued."""

    def __init__(self, settings: ServeSettings) -> None:
        super().__init__(settings)
        self.store = JobStore(settings.data_dir / "jobs.sqlite3")
        self.seen: list[dict[str, Any]] = []

    async def check(
        self, video: Path, audio: Path, labels: dict[str, str], options: dict[str, Any]
    ) -> CheckedInputs:
        self.seen.append(options)
        raise InputRejectedError("options_read", None, "stopped after reading the options")


@pytest.fixture(scope="module")
def service_client(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, OptionsOnlyService]:
    data = tmp_path_factory.mktemp("options_serve")
    service = OptionsOnlyService(ServeSettings(data_dir=data))
    return TestClient(create_app(service.settings, service)), service


def via_generate(tmp_path: Path, name: str, text: str) -> str | None:
    """`stylelipsync generate` with missing inputs: the option's message, or None if the option was taken
    (the command then stops at the missing video, before any model or media work)."""
    flag = "--" + name.replace("_", "-")
    missing = tmp_path / "missing.mp4"
    args = ["generate", "-v", str(missing), "-a", str(missing), "-o", str(tmp_path / "o.mp4"), flag, text]
    return _cli_message(CliRunner().invoke(cli, args), flag, f"{missing}: file not found")


def via_batch(tmp_path: Path, name: str, text: str) -> str | None:
    """`stylelipsync batch` with a missing jobs file: the option's message, or None if it was taken."""
    flag = "--" + name.replace("_", "-")
    missing = tmp_path / "missing.csv"
    result = CliRunner().invoke(cli, ["batch", str(missing), flag, text])
    return _cli_message(result, flag, f"{missing}: cannot read the jobs file")


def _cli_message(result: Any, flag: str, otherwise: str) -> str | None:
    found = re.search(rf"Invalid value for '{flag}': (.*)", result.output)
    if found is not None:
        assert result.exit_code == 2, result.output
        return found.group(1).strip()
    assert otherwise in result.output, result.output
    return None


def via_form(client: TestClient, service: OptionsOnlyService, name: str, text: str) -> tuple[str | None, Any]:
    """POST /v1/jobs with the field: the error message (and its field is the option), or None and the value
    that reached the input check."""
    files = {"video": ("face.mp4", b"not read"), "audio": ("speech.wav", b"not read")}
    response = client.post("/v1/jobs", files=files, data={name: text})
    body = response.json()
    assert response.status_code == 422, body
    if body["code"] == "options_read":
        return None, service.seen[-1][name]
    assert body["code"] == "bad_option" and body["field"] == name, body
    return body["error"], None


def via_csv(tmp_path: Path, name: str, text: str) -> tuple[str | None, Any]:
    """A one-row jobs CSV with the option's column: the row's message, or None and the row's value."""
    jobs_csv = tmp_path / "jobs.csv"
    cell = '"' + text + '"'
    jobs_csv.write_text(f"video,audio,output,{name}\nv.mp4,a.wav,o.mp4,{cell}\n")
    [job] = read_jobs(jobs_csv, GenerateOptions())
    if job.problem is None:
        return None, getattr(job.options, name)
    prefix = f"{jobs_csv}: line 2: column {name}: "
    assert job.problem.startswith(prefix), job.problem
    return job.problem[len(prefix) :], None


@pytest.mark.parametrize("case", REFUSED, ids=[f"{n}={t}" for n, t in REFUSED])
def test_a_bad_value_gets_the_same_message_everywhere(
    case: tuple[str, str], service_client: tuple[TestClient, OptionsOnlyService], tmp_path: Path
) -> None:
    name, text = case
    messages = {"csv": via_csv(tmp_path, name, text)[0]}
    if name in FORM_OPTIONS:
        messages["form"] = via_form(*service_client, name, text)[0]
    if name not in YES_NO:
        messages["generate"] = via_generate(tmp_path, name, text)
    if name in BATCH_CLI:
        messages["batch"] = via_batch(tmp_path, name, text)
    assert messages == dict.fromkeys(messages, REFUSED[case])


@pytest.mark.parametrize("case", ACCEPTED, ids=[f"{n}={t}" for n, t in ACCEPTED])
def test_a_good_value_is_taken_with_the_same_value_everywhere(
    case: tuple[str, str], service_client: tuple[TestClient, OptionsOnlyService], tmp_path: Path
) -> None:
    name, text = case
    message, value = via_csv(tmp_path, name, text)
    assert message is None and value == ACCEPTED[case]
    if name in FORM_OPTIONS:
        message, value = via_form(*service_client, name, text)
        assert message is None and (tuple(value) if isinstance(value, list) else value) == ACCEPTED[case]
    if name not in YES_NO:
        assert via_generate(tmp_path, name, text) is None
        flag = "--" + name.replace("_", "-")
        assert generate.make_context("generate", [flag, text]).params[name] == ACCEPTED[case]
    if name in BATCH_CLI:
        assert via_batch(tmp_path, name, text) is None


def test_yes_no_flags_give_what_the_words_give() -> None:
    """On the command line a yes/no option is a flag (`--keep-silence`, `--no-trim`): off and on give what
    "0" and "yes" give in a form or CSV, and leaving it out gives the `GenerateOptions` default."""
    defaults = GenerateOptions()
    for command, names in ((generate, YES_NO), (batch, YES_NO)):
        unset = command.make_context(command.name or "", ["jobs.csv"] if command is batch else [])
        for name in names:
            assert unset.params[name] == getattr(defaults, name)
            flag = ("--no-" if getattr(defaults, name) else "--") + name.replace("_", "-")
            args = [flag, "jobs.csv"] if command is batch else [flag]
            given = command.make_context(command.name or "", args).params[name]
            assert given == parse_option(name, "0" if getattr(defaults, name) else "yes")


def test_every_generate_option_is_a_csv_column_and_generate_flag() -> None:
    """No entry point keeps a private list: every `GenerateOptions` field is a CSV column and a flag of
    `generate`, and the form offers only generate options."""
    flags = {p.name for p in generate.params}
    assert set(OPTION_SPECS) <= flags
    assert set(FORM_OPTIONS) <= set(OPTION_SPECS)
    jobs_columns = [name.replace("_", "-") for name in OPTION_SPECS]
    from stylelipsync.batch.jobs import option_columns

    known, unknown = option_columns(["video", "audio", "output", *jobs_columns])
    assert unknown == [] and sorted(known.values()) == sorted(OPTION_SPECS)
