"""The jobs CSV: one dubbing job per row, columns `video,audio,output` plus optional generate options.

Relative paths are taken from the CSV's folder. An option column (any `GenerateOptions` field, e.g. `engine`,
`bank_video`, `fps`, `loop`, `keep_silence`, `bbox`) overrides the command-line value for its row; an empty
cell keeps it. Cells are read by the options' specs (`pipelines.options.parse_option`), so a bad value gets
the same message as on the command line or in a service form field. A row that cannot run (a missing path,
an unreadable option value, an output shared with another row) becomes a job that carries its problem: it is
reported failed without being run, and the other rows go on.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stylelipsync.errors import MediaError
from stylelipsync.pipelines.options import OPTION_SPECS, OptionError, parse_option

PATH_COLUMNS = ("video", "audio", "output")


@dataclass(frozen=True)
class Job:
    """One row of a jobs CSV, resolved. `options` holds the row's generate options (None if `problem`)."""

    index: int
    """1-based position among the CSV's rows (the `[i/n]` of the reports)."""
    line: int
    """Line of the CSV file the row is on (for messages)."""
    key: str
    """The job's name in the results manifest: the output cell as written (with the line for a second row
    writing the same output)."""
    video: Path | None
    audio: Path | None
    output: Path | None
    options: Any = None
    """The row's `GenerateOptions`: the common options with the row's option columns applied."""
    problem: str | None = None
    """Why the row cannot run (the message reported as its failure), or None."""

    def absolute(self) -> Job:
        """The same job with absolute paths, for workers whose working folder differs from ours."""
        options = self.options
        if options is not None and options.crop_output is not None:
            options = replace(options, crop_output=_absolute(Path(options.crop_output)))
        if options is not None and options.bank_video:
            options = replace(options, bank_video=tuple(os.path.abspath(p) for p in options.bank_video))
        return replace(
            self,
            video=_absolute(self.video),
            audio=_absolute(self.audio),
            output=_absolute(self.output),
            options=options,
        )


def _absolute(path: Path | None) -> Path | None:
    return None if path is None else Path(os.path.abspath(path))


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a jobs CSV; `MediaError` if it is unreadable or has no video,audio,output header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MediaError(f"{path}: cannot read the jobs file ({exc})") from exc
    header = set(rows[0].keys()) if rows else set()
    if not rows or set(PATH_COLUMNS) - header:
        raise MediaError(f"{path}: a jobs file needs a header line video,audio,output and at least one row")
    return rows


def read_jobs(path: Path, common: Any, warn: Callable[[str], None] | None = None) -> list[Job]:
    """Every row of the jobs CSV at `path` as a `Job`, with `common` (`GenerateOptions`) as the defaults.

    `warn` is told about columns that are neither paths nor options (they are ignored).
    """
    rows = read_rows(path)
    _, unknown = option_columns(list(rows[0].keys()))
    if unknown and warn is not None:
        warn(f"{path}: ignoring the column(s) {', '.join(unknown)} (not a path or a generate option)")
    base = path.parent
    jobs: list[Job] = []
    owners: dict[str, int] = {}
    for index, row in enumerate(rows, 1):
        job = _job(row, index, index + 1, base, common, path)
        if job.output is not None and job.problem is None:
            where = os.path.normpath(os.path.abspath(job.output))
            if where in owners:
                job = replace(
                    job,
                    key=f"{job.key} (line {job.line})",
                    problem=f"{path}: line {job.line}: {job.key} is also the output of line {owners[where]}; "
                    "give every job its own output",
                )
            else:
                owners[where] = job.line
        jobs.append(job)
    return jobs


def option_columns(header: list[str]) -> tuple[dict[str, str], list[str]]:
    """Map the header's option columns to `GenerateOptions` fields; also list the unknown columns."""
    known, unknown = {}, []
    for name in header:
        field = (name or "").strip().lower().replace("-", "_")
        if field in PATH_COLUMNS:
            continue
        if field in OPTION_SPECS:
            known[name] = field
        elif field:
            unknown.append(name)
    return known, unknown


def _job(row: dict[str, str], index: int, line: int, base: Path, common: Any, path: Path) -> Job:
    cells = {k: (row.get(k) or "").strip() for k in PATH_COLUMNS}
    key = cells["output"] or f"line {line}"
    video, audio, output = (_path(cells[k], base) if cells[k] else None for k in PATH_COLUMNS)
    job = Job(index=index, line=line, key=key, video=video, audio=audio, output=output)
    if not all(cells.values()):
        return replace(job, problem=f"{path}: line {line}: video, audio and output must all be given")
    changes: dict[str, Any] = {}
    columns, _ = option_columns(list(row.keys()))
    for column, field in columns.items():
        text = (row.get(column) or "").strip()
        if not text:
            continue
        try:
            changes[field] = parse_option(field, text)
        except OptionError as exc:
            return replace(job, problem=f"{path}: line {line}: column {column}: {exc}")
    if "crop_output" in changes:
        changes["crop_output"] = _path(changes["crop_output"], base)
    if "bank_video" in changes:
        changes["bank_video"] = tuple(str(_path(p, base)) for p in changes["bank_video"])
    if changes.get("bank_video") and changes.get("engine", common.engine) == "stylelipsync":
        return replace(
            job,
            problem=f"{path}: line {line}: column bank_video goes with the bank engine, but the row renders "
            "with stylelipsync; set its engine column to bank or empty its bank_video cell",
        )
    try:
        options = common.updated(**changes)
    except ValueError as exc:
        return replace(job, problem=f"{path}: line {line}: {exc}; fix the row's option columns")
    return replace(job, options=options)


def _path(text: str, base: Path) -> Path:
    return Path(text) if Path(text).is_absolute() else base / text
