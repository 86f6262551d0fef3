"""Lip-sync of a StyleLipSync model on shared clips driven by other speakers' audio (issue #8's table).

For each (source clip, driving audio) pair: dub the clip with the model (audio cut to the clip's length, at
most `--seconds`), then score with `stylelipsync.evaluation` the offline sync (a) energy and (b) predicted
mouth opening of (1) the real clip with its own audio, (2) the real clip against the driving audio
(mismatched: should be near zero) and (3) the dubbed clip against the driving audio. Clips in SILENCE are also
dubbed with digital silence for the silence-leak ratio (mouth motion on silence / on speech, < 1 passes).
Mouth sharpness (variance of the Laplacian of the mouth crop) is reported as the ratio dubbed / real clip.
Where the driving audio comes from a talking video, (c) compares the dubbed mouth opening with the real mouth
opening of the person who spoke that audio: unlike (b) it involves no model of audio → mouth, so it cannot be
gamed by rendering what such a model predicts; the source clip's own mouth against it is the chance level.

Writes a Markdown table (stdout, and appended to --results if given) and a JSON file.

    nice .venv/bin/python benchmarks/eval_demo_model.py --model /path/to/model_dir --work /work/runs/eval_demo
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import time
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from stylelipsync.evaluation.audio_to_mouth import HELD_OUT_PERSONS
from stylelipsync.evaluation.runner import EvalConfig, Evaluator, Job
from stylelipsync.media import load_audio, probe
from stylelipsync.pipelines import LipSyncPipeline
from stylelipsync.training.preprocess import read_media_manifest

REPO = Path(__file__).resolve().parents[1]
SR = 16000

PAIRS = [
    ("sadtalker_WDA_KatieHill_000.mp4", "styletalk_KristiNoem.wav"),
    ("pcavs_Audio_Source_00104.mp4", "pcavs_Audio_Source_681100216.mp4"),
    ("deepavsr_00019.mp4", "edtalk_mouth_source.wav"),
    ("vrt_face_4.mp4", "sls_CarlyFiorina_0_10s.wav"),
    ("pcavs_Pose_Source_741400163.mp4", "sls_RoyBlunt_0_10s.wav"),
    ("sadtalker_WDA_EdMarkey0_000.mp4", "sadtalker_WDA_KatieHill_000.mp4"),
    ("deepavsr_00016.mp4", "deepavsr_00019.mp4"),
]
PAIRS_MORE = [
    ("pcavs_Audio_Source_00086.mp4", "styletalk_reagan_clip1.wav"),
    ("vrt_face_1.mp4", "sadtalker_WDA_BobMenendez_000.mp4"),
    ("sadtalker_RD_Radio2_000.mp4", "vrt_face_2.mp4"),
    ("styletalk_feifeili_clip3.mp4", "styletalk_Obama_clip1.wav"),
    ("pcavs_Pose_Source_00473.mp4", "pcavs_Audio_Source_00015.mp4"),
    ("deepavsr_00001.mp4", "pcavs_Pose_Source_796100172.mp4"),
    ("tpsmm_driving.mp4", "r3dp_May_5s.mp4"),
    ("livep_driving_d20.mp4", "sadtalker_RD_Radio36_000.wav"),
]
"""``--pairs all`` adds these: the sixth held-out clip and 7 more training persons, each driven by a voice
from another clip (the last one by a speech-only file whose speaker is in no video)."""
SILENCE = [
    "sadtalker_WDA_KatieHill_000.mp4",
    "pcavs_Audio_Source_00104.mp4",
    "sadtalker_WDA_EdMarkey0_000.mp4",
]


def write_wav(path: Path, wave: np.ndarray) -> Path:
    """16 kHz mono int16 WAV."""
    wavfile.write(path, SR, (np.clip(wave, -1, 1) * 32767).astype(np.int16))
    return path


def fmt(x: float | None, lag: int | None = None) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:+.2f}" + (f" ({lag:+d})" if lag is not None else "")


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="Model directory (default: the shipped model).")
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    parser.add_argument("--work", type=Path, default=Path("/work/runs/eval_demo"))
    parser.add_argument("--cache", type=Path, default=Path("/work/runs/eval_cache"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--label", default="", help="Name of the model in the report.")
    parser.add_argument("--results", type=Path, help="Append the Markdown section to this file.")
    parser.add_argument("--no-silence", action="store_true")
    parser.add_argument(
        "--pairs", choices=("core", "all"), default="core", help="core: the 7 pairs of the tables; all: 15."
    )
    args = parser.parse_args()

    manifest = read_media_manifest(args.media / "MANIFEST.tsv")
    args.work.mkdir(parents=True, exist_ok=True)
    pipe = LipSyncPipeline.from_pretrained(args.model) if args.model else LipSyncPipeline.from_pretrained()
    evaluator = Evaluator(EvalConfig(metrics=("sync", "sharpness"), cache_dir=args.cache))
    silence = write_wav(args.work / "silence_8s.wav", np.zeros(8 * SR, np.float32))
    rows = []
    started = time.perf_counter()
    for clip, driver in PAIRS + (PAIRS_MORE if args.pairs == "all" else []):
        video = args.media / clip
        stem = clip.removesuffix(".mp4")
        info = manifest.get(clip, {})
        own_audio = args.media / (info.get("audio") or clip)
        seconds = min(probe(video).duration or args.seconds, args.seconds)
        drive_wave = load_audio(args.media / driver, SR)[: int(seconds * SR)]
        drive = write_wav(args.work / f"{stem}__drive.wav", drive_wave)
        out = args.work / f"{stem}__dubbed.mp4"
        result = pipe(video, drive, out, overwrite=True)
        silent_out = None
        if clip in SILENCE and not args.no_silence:
            silent_out = args.work / f"{stem}__silence.mp4"
            pipe(video, silence, silent_out, overwrite=True)
        # a talking driver video: its speaker's real mouth is the reference of (c)
        speaker = args.media / driver if driver in manifest else None
        gen = evaluator.evaluate(Job(stem, out, audio=drive, silent=silent_out, speaker=speaker))
        own = evaluator.evaluate(Job(stem, video, audio=own_audio))
        mis = evaluator.evaluate(Job(stem, video, audio=drive, speaker=speaker))
        person = info.get("person", "?")
        rows.append(
            {
                "clip": stem,
                "person": person,
                "held_out": person in HELD_OUT_PERSONS,
                "driver": driver,
                "fps_generate": result.frames / result.seconds,
                "own": own.values,
                "mismatched": mis.values,
                "generated": gen.values,
            }
        )
        print(stem, {k: rows[-1][k] for k in ("own", "mismatched", "generated")}, flush=True)
    report = render(rows, args, time.perf_counter() - started)
    (args.work / "eval_demo_model.json").write_text(json.dumps(rows, indent=1, default=float) + "\n")
    print(report)
    if args.results:
        with args.results.open("a") as fh:
            fh.write(report)


def _mean(rows: list[dict], side: str, key: str) -> tuple[float, float]:
    vals = [r[side][key] for r in rows if r[side].get(key) is not None and math.isfinite(r[side][key])]
    return (float(np.mean(vals)), float(np.std(vals))) if vals else (float("nan"), float("nan"))


def sharpness_ratio(row: dict) -> float:
    """Mouth sharpness of the dubbed clip over that of the real clip (NaN if either is missing)."""
    dubbed, real = row["generated"].get("mouth_sharpness"), row["own"].get("mouth_sharpness")
    if dubbed is None or real is None or not real > 0:
        return float("nan")
    return float(dubbed / real)


def render(rows: list[dict], args: argparse.Namespace, seconds: float) -> str:
    """Markdown: per-clip table, means by split, silence leak."""
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        "",
        f"## eval_demo_model.py — {args.label or args.model or 'shipped model'} — {stamp}",
        "",
        "(b) = mouth opening (FaceMesh) vs opening predicted from the audio by the ridge model, best lag ±2 "
        "frames; (a) = vs speech energy, best lag ±5. Lag in brackets. *Real, own*: source clip with its own "
        "audio; *real, mism.*: the same clip against the driving audio; *dubbed*: the model's output driven "
        f"by that audio (cut to the clip's length, ≤ {args.seconds:g} s). *Mouth sharpness dubbed/real*: "
        "variance of the Laplacian of the mouth crop, median over frames, dubbed over real clip (a perfect "
        "256² render keeps about 0.3–0.9 depending on the clip's resolution, docs/evaluation.md). "
        "Held-out persons marked *. "
        f"{len(rows)} pairs, {seconds / 60:.1f} min on 2 shared CPU cores.",
        "",
        "| clip | driving audio | (b) real, own | (b) real, mism. | **(b) dubbed** | (a) real, own | "
        "(a) real, mism. | **(a) dubbed** | mouth std real → dubbed | mouth sharpness dubbed/real | "
        "silence leak |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o, m, g = r["own"], r["mismatched"], r["generated"]
        leak = g.get("leak_ratio")
        lines.append(
            f"| `{r['clip']}`{' *' if r['held_out'] else ''} | `{r['driver']}` | "
            f"{fmt(o.get('sync_pred'), o.get('sync_pred_lag'))} | {fmt(m.get('sync_pred'))} | "
            f"**{fmt(g.get('sync_pred'), g.get('sync_pred_lag'))}** | {fmt(o.get('sync_energy'))} | "
            f"{fmt(m.get('sync_energy'))} | **{fmt(g.get('sync_energy'), g.get('sync_energy_lag'))}** | "
            f"{o.get('mouth_std', float('nan')):.3f} → {g.get('mouth_std', float('nan')):.3f} | "
            f"{fmt_ratio(sharpness_ratio(r))} | {'–' if leak is None else f'{leak:.2f}'} |"
        )
    lines += [
        "",
        "| subset | n | (b) real, own | (b) real, mism. | **(b) dubbed** | (a) dubbed | "
        "mouth sharpness dubbed/real |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, subset in (
        ("all", rows),
        ("held-out persons", [r for r in rows if r["held_out"]]),
        ("training persons", [r for r in rows if not r["held_out"]]),
    ):
        if not subset:
            continue
        cells = [_mean(subset, "own", "sync_pred"), _mean(subset, "mismatched", "sync_pred")]
        cells += [_mean(subset, "generated", "sync_pred"), _mean(subset, "generated", "sync_energy")]
        ratios = [x for x in map(sharpness_ratio, subset) if math.isfinite(x)]
        sharp = f"{np.mean(ratios):.2f} ± {np.std(ratios):.2f}" if ratios else "–"
        lines.append(
            f"| {label} | {len(subset)} | "
            + " | ".join(f"{mu:+.2f} ± {sd:.2f}" for mu, sd in cells[:2])
            + f" | **{cells[2][0]:+.2f} ± {cells[2][1]:.2f}** | {cells[3][0]:+.2f} ± {cells[3][1]:.2f} | "
            + f"{sharp} |"
        )
    lines += render_follow(rows)
    leaks = [r["generated"].get("leak_ratio") for r in rows]
    leaks = [x for x in leaks if x is not None and math.isfinite(x)]
    if leaks:
        lines += [
            "",
            f"Silence leak (mouth motion on digital silence / on speech, < 1 passes): "
            f"mean {np.mean(leaks):.2f} over {len(leaks)} clips ({', '.join(f'{x:.2f}' for x in leaks)}).",
        ]
    return "\n".join(lines) + "\n"


def render_follow(rows: list[dict]) -> list[str]:
    """Markdown for (c): pairs whose driving audio comes from a talking video."""
    pairs = [r for r in rows if r["generated"].get("sync_speaker") is not None]
    if not pairs:
        return []
    lines = [
        "",
        "(c) mouth opening vs the **real mouth opening of the person speaking the driving audio** (FaceMesh "
        "on the driving video, same frame rate, best lag ±2): no audio model involved. *Source, real* = the "
        "source clip's own mouth against it (chance level).",
        "",
        "| clip | driving video | (c) source, real | **(c) dubbed** |",
        "|---|---|---|---|",
    ]
    for r in pairs:
        dub, lag, real = (
            r["generated"]["sync_speaker"],
            r["generated"]["sync_speaker_lag"],
            r["mismatched"]["sync_speaker"],
        )
        held = " *" if r["held_out"] else ""
        lines.append(f"| `{r['clip']}`{held} | `{r['driver']}` | {fmt(real)} | **{fmt(dub, lag)}** |")
    dubbed = np.array([r["generated"]["sync_speaker"] for r in pairs], dtype=float)
    real = np.array([r["mismatched"]["sync_speaker"] for r in pairs], dtype=float)
    lines.append(
        f"| mean of {len(pairs)} | | {np.nanmean(real):+.2f} ± {np.nanstd(real):.2f} | "
        f"**{np.nanmean(dubbed):+.2f} ± {np.nanstd(dubbed):.2f}** ({int(np.sum(dubbed > real))}/{len(pairs)} "
        "above the source's own mouth) |"
    )
    return lines


if __name__ == "__main__":
    main()
