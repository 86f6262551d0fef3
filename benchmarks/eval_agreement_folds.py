"""Does an audio model's gain carry through the bank engine? Agreement over all 30 shared persons, in 6 folds.

Issue #20 asks that the bank's speaker-mouth agreement improve by at least as much as the audio model's
correlation did. `eval_bank.py` measures agreement on 10 pairs of 5 persons (4-5 driver voices), a mean known
to about ±0.03; this benchmark measures it on every shared person. The 30 persons fall into six groups of five
(`eval_bank.PAIR_SETS`: `heldout`, `validation`, `fold-a` … `fold-d`); for each group and each audio model
(`--models`, variants of `scripts/fit_mouth_shape.py`), the model is refitted without the group's persons
and the group's 10 pairs are dubbed with it (`eval_bank.py --engines bank --no-silence`). Every person drives
two pairs. Three figures per group and model, each by a model that never heard the person scored:

* **model r**: the model's predicted opening against the person's FaceMesh opening (`mouth_opening`) on
  all of the person's talking clips, whole clips, lag 0, mean over the person's clips, then over persons:
  the leave-group-out analogue of the LOPO figure of `benchmarks/mouth_shape_lopo.md`.
* **drive r**: the same prediction on the driving audio of each pair (the driver's speech cut as the dub
  uses it), against the driver's real opening at the dub's frame rate, best lag ±2: what a renderer that
  showed the prediction exactly would score as agreement.
* **agreement**: the dub's measured opening against the driver's real opening, best lag ±2 (`sync_speaker`).

Gains are the second model's figures minus the first's (`--models`: first = reference); their standard errors
come from the 60 paired differences (pairs) or 30 (persons). Also reported: the look figures (sharpness,
motion, jitter ×) over the 60 pairs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/eval_agreement_folds.py --work /work/runs/folds \\
        --results benchmarks/RESULTS.md

Refitted models, dubs and evaluations are reused from `--work` when present (the pipeline is deterministic).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from eval_bank import PAIR_SETS, SR, figures, git_commit, set_persons
from scipy.io import wavfile

from stylelipsync.audio.mouth_shape_model import MouthShapeModel
from stylelipsync.evaluation.face_tracks import track_video
from stylelipsync.evaluation.mouth_opening import mouth_opening
from stylelipsync.evaluation.offline_sync import lagged_correlation
from stylelipsync.evaluation.runner import SPEAKER_MAX_LAG
from stylelipsync.media import VideoReader, load_audio
from stylelipsync.training.preprocess import read_media_manifest

REPO = Path(__file__).resolve().parents[1]
SETS = ("heldout", "validation", "fold-a", "fold-b", "fold-c", "fold-d")
MODELS = {
    "baseline": "mel ridge ±200 ms, 16 bands, per-clip norm (baseline)",
    "embedding-2": "PW + spectral14 + speech embedding (±2 windows 40 ms apart) + σ=1",
    "shipped": "",  # the shipped variant (fit_mouth_shape.py's default)
}


def refit(model: str, pair_set: str, persons: tuple[str, ...], args: argparse.Namespace) -> Path:
    """The model's variant fitted without the pair set's persons (reused when present)."""
    out = args.work / "models" / f"{model}_{pair_set}.safetensors"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(REPO / "scripts" / "fit_mouth_shape.py"), "--media", str(args.media)]
        command += ["--hold-out", ",".join(persons), "--out", str(out)]
        if MODELS[model]:
            command += ["--variant", MODELS[model]]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return out


def run_eval(model: str, pair_set: str, shape_model: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """eval_bank.py on one pair set with one refitted model; its per-pair rows."""
    work = args.work / pair_set / model
    dump = work / "eval_bank.json"
    if not dump.is_file():
        work.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(REPO / "benchmarks" / "eval_bank.py"), "--engines", "bank"]
        command += ["--pair-set", pair_set, "--shape-model", str(shape_model), "--no-silence"]
        command += ["--work", str(work), "--cache", str(args.cache), "--media", str(args.media)]
        with (work / "eval_bank.log").open("w") as log:
            subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    return json.loads(dump.read_text())


def drive_r(row: dict[str, Any], model: MouthShapeModel, work: Path, args: argparse.Namespace) -> float:
    """The model's opening on the pair's driving audio against the driver's real opening (±2 frames)."""
    name = row["pair"]
    rate, wave = wavfile.read(work / f"{name}__drive.wav")
    wave = wave.astype(np.float32) / (32768.0 if wave.dtype == np.int16 else 1.0)
    with VideoReader(work / f"{name}__bank.mp4") as reader:
        frames, fps = len(reader), reader.fps
    driver = track_video(args.media / row["driver"], fps=fps, cache_dir=args.cache)
    real = mouth_opening(driver.raw, driver.detected)
    predicted = model.predict(wave, rate, frames, fps)[:, 0]
    return lagged_correlation(real, predicted, max_lag=SPEAKER_MAX_LAG).correlation


def person_r(
    person: str, model: MouthShapeModel, manifest: dict[str, dict[str, str]], args: argparse.Namespace
) -> float:
    """Lag-0 correlation of predicted and measured opening on all of a person's talking clips (mean)."""
    scores = []
    for clip, entry in sorted(manifest.items()):
        if entry["person"] != person:
            continue
        track = track_video(args.media / clip, cache_dir=args.cache)
        real = mouth_opening(track.raw, track.detected)
        audio = args.media / (entry["audio"] or clip)
        predicted = model.predict(load_audio(audio, SR), SR, len(real), track.fps)[:, 0]
        scores.append(lagged_correlation(real, predicted, max_lag=0).correlation)
    return float(np.mean(scores))


def _mean_se(values: list[float]) -> tuple[float, float]:
    x = np.asarray(values, dtype=np.float64)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def render(table: dict[str, dict[str, Any]], models: list[str], args: argparse.Namespace) -> str:
    """Markdown: per set and pooled, each figure per model and the gains from the first model."""
    ref, others = models[0], models[1:]
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        "",
        f"## eval_agreement_folds.py — {', '.join(models)} — {stamp} — commit {git_commit()}",
        "",
        "Each of the 30 shared persons scored by audio models refitted without its group of five; bank "
        "engine, `eval_bank.py --no-silence`, 10 pairs per group. *model r*: predicted vs measured opening "
        "on all of the person's clips, lag 0 (as LOPO); *drive r*: the prediction on each pair's driving "
        "audio vs the driver's real opening, best lag ±2; *agreement*: the dub vs the driver's real "
        "opening, best lag ±2.",
        "",
        "| set | persons / pairs | "
        + " | ".join(f"{k} {m}" for k in ("model r", "drive r", "agreement") for m in models)
        + " | "
        + " | ".join(f"{k} gain {m}" for m in others for k in ("model r", "drive r", "agreement"))
        + " |",
        "|" + "---|" * (2 + 3 * len(models) + 3 * len(others)),
    ]
    pooled: dict[tuple[str, str], list[float]] = {}
    for name in [s for s in SETS if s in table]:
        entry = table[name]
        cells = []
        for m in models:
            for key, values in entry[m].items():
                pooled.setdefault((m, key), []).extend(values)
        for key in ("model_r", "drive_r", "agreement"):
            for m in models:
                cells.append(f"{np.mean(entry[m][key]):+.3f}")
        for m in others:
            for key in ("model_r", "drive_r", "agreement"):
                cells.append(f"{np.mean(entry[m][key]) - np.mean(entry[ref][key]):+.3f}")
        lines.append(
            f"| `{name}` | {len(entry[ref]['model_r'])} / {len(entry[ref]['agreement'])} | "
            + " | ".join(cells)
            + " |"
        )
    cells = []
    for key in ("model_r", "drive_r", "agreement"):
        for m in models:
            mean, se = _mean_se(pooled[(m, key)])
            cells.append(f"**{mean:+.3f}** ± {se:.3f}")
    for m in others:
        for key in ("model_r", "drive_r", "agreement"):
            diff = np.asarray(pooled[(m, key)]) - np.asarray(pooled[(ref, key)])
            mean, se = _mean_se(list(diff))
            cells.append(f"**{mean:+.3f}** ± {se:.3f}")
    count = len(pooled[(ref, "model_r")]), len(pooled[(ref, "agreement")])
    lines.append(f"| all | {count[0]} / {count[1]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "± = standard error of the mean (of the paired differences for gains) over persons (model r) or "
        "pairs.",
        "",
        "| model | sharpness × | motion × | jitter × | agreement − drive r (the engine's loss) | "
        "agreement / drive r (what the engine transmits) |",
        "|---|---|---|---|---|---|",
    ]
    for m in models:
        looks = [np.nanmean(pooled[(m, k)]) for k in ("sharpness", "motion", "jitter")]
        agreement, drive = np.mean(pooled[(m, "agreement")]), np.mean(pooled[(m, "drive_r")])
        lines.append(
            f"| {m} | {looks[0]:.3f} | {looks[1]:.3f} | {looks[2]:.3f} | {agreement - drive:+.3f} | "
            f"{agreement / drive:.3f} |"
        )
    for m in others:
        gains = {
            key: np.mean(pooled[(m, key)]) - np.mean(pooled[(ref, key)])
            for key in ("model_r", "drive_r", "agreement")
        }
        per_model = gains["agreement"] / gains["model_r"]
        per_drive = gains["agreement"] / gains["drive_r"]
        lines.append(
            f"\n{m} against {ref}: agreement gain / model r gain = {per_model:.2f}; agreement gain / drive r "
            f"gain = {per_drive:.2f}."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    parser.add_argument("--work", type=Path, default=Path("/work/runs/folds"))
    parser.add_argument("--cache", type=Path, default=Path("/work/runs/eval_cache"), help="Face track cache.")
    parser.add_argument(
        "--models", default="baseline,shipped", help=f"Comma list of {sorted(MODELS)}; first = reference."
    )
    parser.add_argument("--sets", default=",".join(SETS), help="Comma list of pair sets.")
    parser.add_argument("--jobs", type=int, default=2, help="eval_bank.py runs at once.")
    parser.add_argument("--results", type=Path, help="Append the Markdown section to this file.")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [m for m in models if m not in MODELS] + [s for s in sets if s not in PAIR_SETS]
    if unknown or len(models) < 2:
        raise SystemExit(
            f"--models needs two or more of {sorted(MODELS)}, --sets of {sorted(PAIR_SETS)}: {unknown}"
        )
    manifest = read_media_manifest(args.media / "MANIFEST.tsv")
    persons = {s: PAIR_SETS[s].persons or set_persons(PAIR_SETS[s], manifest) for s in sets}
    files = {(m, s): refit(m, s, persons[s], args) for s in sets for m in models}
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = {key: pool.submit(run_eval, key[0], key[1], path, args) for key, path in files.items()}
        rows = {key: future.result() for key, future in runs.items()}
    table: dict[str, dict[str, Any]] = {}
    for (m, s), pair_rows in rows.items():
        model = MouthShapeModel.load(files[(m, s)])
        video_rows = [r for r in pair_rows if not r["photo"]]
        looks = [figures(r, "bank") for r in video_rows]
        table.setdefault(s, {})[m] = {
            "model_r": [person_r(p, model, manifest, args) for p in persons[s]],
            "drive_r": [drive_r(r, model, args.work / s / m, args) for r in video_rows],
            "agreement": [f["agreement"] for f in looks],
            **{k: [f[k] for f in looks] for k in ("sharpness", "motion", "jitter")},
        }
        print(f"{s} {m}: " + ", ".join(f"{k} {np.mean(v):+.3f}" for k, v in table[s][m].items()), flush=True)
    (args.work / "folds.json").write_text(json.dumps(table, indent=1) + "\n")
    report = render(table, models, args)
    print(report)
    if args.results:
        with args.results.open("a") as fh:
            fh.write(report)


if __name__ == "__main__":
    main()
