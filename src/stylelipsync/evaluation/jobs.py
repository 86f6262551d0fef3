"""The jobs of `stylelipsync evaluate`: generated videos found in files and folders, each paired with its
reference, driving audio, silence-driven version and speaker video (see `runner` for what a job is for)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stylelipsync.errors import MediaError
from stylelipsync.formats import IMAGE_SUFFIXES, SPEECH_SOURCE_SUFFIXES, VIDEO_SUFFIXES


@dataclass
class Job:
    """One generated video and what it is compared with."""

    name: str
    generated: Path
    reference: Path | None = None
    audio: Path | None = None
    silent: Path | None = None
    speaker: Path | None = None
    """A video of the person speaking the driving audio, in sync with it (adds ``sync_speaker``)."""


def collect_files(items: Sequence[str | Path], suffixes: Sequence[str]) -> list[Path]:
    """Files named directly, plus the files with one of `suffixes` inside named directories (sorted)."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
        elif p.is_file():
            out.append(p)
        else:
            raise MediaError(f"{p}: no such file or directory")
    return out


def _match(generated: list[Path], others: list[Path], what: str) -> list[Path | None]:
    """Pair each generated file with one of `others`: none, the single one, same stem, or same position."""
    if not others:
        return [None] * len(generated)
    if len(others) == 1:
        return [others[0]] * len(generated)
    by_stem = {p.stem: p for p in others}
    if all(g.stem in by_stem for g in generated):
        return [by_stem[g.stem] for g in generated]
    if len(others) == len(generated):
        return list(others)
    raise MediaError(
        f"cannot pair {len(generated)} generated videos with {len(others)} {what} files: give one {what}, "
        "as many as generated videos (same order), or files with the same names"
    )


def make_jobs(
    generated: Sequence[str | Path],
    reference: Sequence[str | Path] = (),
    audio: Sequence[str | Path] = (),
    silent: Sequence[str | Path] = (),
    speaker: Sequence[str | Path] = (),
) -> list[Job]:
    """Jobs from CLI-style lists of files or directories."""
    gens = collect_files(generated, VIDEO_SUFFIXES)
    if not gens:
        raise MediaError("no generated video found (looked for " + ", ".join(VIDEO_SUFFIXES) + ")")
    refs = _match(gens, collect_files(reference, (*VIDEO_SUFFIXES, *IMAGE_SUFFIXES)), "reference")
    auds = _match(gens, collect_files(audio, SPEECH_SOURCE_SUFFIXES), "audio")
    sils = _match(gens, collect_files(silent, VIDEO_SUFFIXES), "silence-driven")
    spks = _match(gens, collect_files(speaker, VIDEO_SUFFIXES), "speaker video")
    names = [g.stem for g in gens]
    if len(set(names)) < len(names):
        names = [str(g) for g in gens]
    rows = zip(names, gens, refs, auds, sils, spks, strict=True)
    return [Job(n, g, r, a, s, k) for n, g, r, a, s, k in rows]
