"""Results of `stylelipsync evaluate` and how they are reported: per-video and set-level values, the summary
over videos, and the text / Markdown table, JSON and CSV written from them."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from stylelipsync.evaluation.runner import EvalConfig

# Columns of each family, in table order.
COLUMNS = {
    "lse": ("lse_d", "lse_c", "av_offset"),
    "sync": ("sync_energy", "sync_energy_lag", "sync_pred", "sync_pred_lag", "mouth_std"),
    "csim": ("csim_dlib", "csim_arcface"),
    "psnr": ("psnr",),
    "ssim": ("ssim",),
    "lpips": ("lpips",),
    "lmd": ("lmd",),
    "sharpness": ("mouth_sharpness",),
    "jitter": ("mouth_jitter", "mouth_motion"),
    "fid": ("fid",),
    "leak": ("leak_std_silent", "leak_std_speech", "leak_ratio"),
    "speaker": ("sync_speaker", "sync_speaker_lag"),
}
INTEGER_COLUMNS = {"av_offset", "sync_energy_lag", "sync_pred_lag", "sync_speaker_lag"}
SET_ROW = "all videos"


@dataclass
class VideoResult:
    """Metric values of one job (None = not computed), notes, and per-frame curves for plotting."""

    name: str
    generated: str
    reference: str | None
    audio: str | None
    values: dict[str, float | int | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    curves: dict[str, np.ndarray] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict without the per-frame curves (NaN → null)."""
        out = asdict(self)
        out.pop("curves")
        out["values"] = {k: _finite(v) for k, v in self.values.items()}
        return out


@dataclass
class SetResult:
    """Metrics computed once over all videos (FID), with notes on how they were obtained or why not."""

    values: dict[str, float | int | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (NaN → null)."""
        return {"values": {k: _finite(v) for k, v in self.values.items()}, "notes": list(self.notes)}


def _finite(value: float | int | None) -> float | int | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def summarise(results: Sequence[VideoResult], columns: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """Mean, std (population) and count over videos of every column with at least one finite value."""
    out: dict[str, dict[str, float | int]] = {}
    for col in columns:
        vals = [float(v) for r in results if (v := r.values.get(col)) is not None and math.isfinite(float(v))]
        if vals:
            out[col] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "n": len(vals)}
    return out


def _fmt(col: str, value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if col in INTEGER_COLUMNS:
        return f"{int(value):d}"
    if col == "mouth_jitter":
        return f"{value:.4f}"
    return f"{value:.2f}" if col in ("psnr", "lse_d", "lse_c", "fid", "mouth_sharpness") else f"{value:.3f}"


def _set_cells(columns: Sequence[str], set_result: SetResult | None) -> list[float | int | None] | None:
    """The set-level value of each column, or None if there is none at all (no set row then)."""
    if set_result is None:
        return None
    cells = [_finite(set_result.values.get(c)) for c in columns]
    return cells if any(v is not None for v in cells) else None


def format_table(
    results: Sequence[VideoResult],
    columns: Sequence[str],
    markdown: bool = False,
    set_result: SetResult | None = None,
) -> str:
    """Per-video rows, mean ± std, then the set-level metrics (FID); aligned text, or a Markdown table."""
    summary = summarise(results, columns)
    rows = [[r.name, *(_fmt(c, r.values.get(c)) for c in columns)] for r in results]
    mean_row = ["mean ± std"]
    for c in columns:
        s = summary.get(c)
        mean_row.append("–" if s is None else f"{s['mean']:.3f} ± {s['std']:.3f}")
    set_cells = _set_cells(columns, set_result)
    tail = [mean_row]
    if set_cells is not None:
        tail.append([SET_ROW, *(_fmt(c, v) for c, v in zip(columns, set_cells, strict=True))])
    header = ["video", *columns]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in [*rows, *tail]]
        return "\n".join(lines)
    table = [header, *rows, *tail]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - len(tail), "-" * len(lines[0]))
    return "\n".join(lines)


def write_json(
    path: Path,
    results: Sequence[VideoResult],
    columns: Sequence[str],
    config: EvalConfig,
    unavailable: dict[str, str],
    set_result: SetResult | None = None,
) -> None:
    """Per-video values and notes, summary, set-level metrics, unavailable metrics (why) and the config."""
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    doc = {
        "config": cfg,
        "unavailable": unavailable,
        "columns": list(columns),
        "videos": [r.to_json() for r in results],
        "summary": summarise(results, columns),
        "set": (set_result or SetResult()).to_json(),
    }
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def write_csv(
    path: Path, results: Sequence[VideoResult], columns: Sequence[str], set_result: SetResult | None = None
) -> None:
    """One row per video (empty cell = not computed), `mean` and `std` rows, then the set-level row (FID)."""
    summary = summarise(results, columns)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video", "generated", "reference", "audio", *columns])
        for r in results:
            cells = [_finite(r.values.get(c)) for c in columns]
            writer.writerow(
                [
                    r.name,
                    r.generated,
                    r.reference or "",
                    r.audio or "",
                    *("" if v is None else v for v in cells),
                ]
            )
        for stat in ("mean", "std"):
            writer.writerow([stat, "", "", "", *(summary[c][stat] if c in summary else "" for c in columns)])
        set_cells = _set_cells(columns, set_result)
        if set_cells is not None:
            writer.writerow([SET_ROW, "", "", "", *("" if v is None else v for v in set_cells)])
