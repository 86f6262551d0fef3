"""Issue #19's acceptance table: bank and stylelipsync engines on held-out persons dubbed with others' speech.

Pairs: a shared clip of one of the five held-out persons (`HELD_OUT_PERSONS`: the demo network and the
evaluation's audio model never saw them; the bank's shipped audio model did, so its fair figures come with
`--shape-model` refitted without them) dubbed with the speech of *another* held-out person, cut from the start
of that person's talking video (its own audio) to `--seconds` (≥ 8 s; shorter source clips are extended by the
pipeline's default ping-pong loop). `--pair-set` picks other groups of five persons (`PAIR_SETS`: `validation`
and `fold-a` … `fold-d`, bank engine with a refitted `--shape-model` only). Resolutions 160 (deepavsr), 224
(pcavs), 512 (KatieHill) and 700 (vrt_face_4); the last pair is a **photo**: the frame of a held-out clip with
the most closed mouth, saved as PNG, driven by another voice.

Every pair is dubbed with each engine through the public API (`LipSyncPipeline`, `engine=`), timed (frames/s
end to end, tracking included; each engine is built before its first timed call) and scored with
`stylelipsync.evaluation.runner` (families sync, sharpness, jitter; face tracks cached in `--cache`):

* **sharpness ×**: mouth sharpness (Laplacian variance of the mouth crop, median) dubbed / input.
* **motion ×**: mouth motion (std over time of the inner-lip opening / eye distance) dubbed / input.
* **jitter ×**: mouth jitter (median |second difference| of the mouth position in the face frame,
  `evaluation/jitter.py`) dubbed / input.
* **agreement**: `sync_speaker`, the dubbed mouth opening against the real mouth opening of the person who
  spoke the driving audio (FaceMesh on the driver video at the dub's frame rate, best lag ±2 frames). No audio
  model is involved, so nothing can be fitted to it. Beside it:
  - **chance**: the input's own (real) mouth, laid on the dub's timeline exactly as the pipeline loops it,
    against the same speaker: what a renderer that leaves the mouth alone scores.
  - **real, own audio**: a speaker's mouth against itself would be 1, which says nothing; and no second
    recording of the same words exists to give a cross-person ceiling. So the real video enters on the scale
    where a ceiling exists: `sync_pred` (mouth opening vs the opening the evaluation's ridge model predicts
    from the audio) of the driver video with its own audio (the real speaker speaking these words; whole
    clip) beside `sync_pred` of the dub against the driving audio. Both are scored against the same speech,
    so the real video is the ceiling of that column. `sync_pred` can be inflated by a renderer steered by a
    similar audio → mouth model (the bank's shape model is one), which is why `agreement` is the acceptance
    figure.
* **leak**: for the first pair of each source clip in SILENCE, the clip is also dubbed with digital silence of
  the same length (default options: the voice-activity gate is on, as a user gets it; `--keep-silence`
  disables the gate to test the audio model alone); leak = mouth motion on silence / on speech (< 0.3).

Targets (issue #19): sharpness ≥ 0.8, motion ≥ 0.85, jitter ≤ 1.1, agreement ≥ 0.35, leak < 0.3, over the
video pairs (the photo's motion and jitter have no input to divide by: their absolute values are shown).

Also writes a contact sheet per pair and engine (`sheets/` in the work dir: input above output at 8 times,
then both zoomed on the mouth) and a JSON dump; prints the Markdown section and appends it to `--results`.
Dubs whose output exists are reused (their timing from the sidecar JSON) unless `--force`.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/eval_bank.py --engines bank,stylelipsync \\
        --results benchmarks/RESULTS.md
    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/eval_bank.py --engines bank --pairs 2   # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.io import wavfile

from stylelipsync.evaluation.audio_to_mouth import HELD_OUT_PERSONS
from stylelipsync.evaluation.contact_sheet import grab_frames, write_contact_sheet
from stylelipsync.evaluation.face_tracks import track_video
from stylelipsync.evaluation.mouth_opening import mouth_opening
from stylelipsync.evaluation.offline_sync import lagged_correlation
from stylelipsync.evaluation.runner import SPEAKER_MAX_LAG, EvalConfig, Evaluator, Job
from stylelipsync.evaluation.silence_leak import write_silence
from stylelipsync.media import VideoReader, load_audio, probe
from stylelipsync.pipelines import LipSyncPipeline
from stylelipsync.pipelines.timeline import LoopMode, source_indices
from stylelipsync.training.preprocess import read_media_manifest

REPO = Path(__file__).resolve().parents[1]
SR = 16000
MIN_SECONDS = 8.0


@dataclass(frozen=True)
class Pair:
    """A held-out source clip (or a photo cut from it) dubbed with another held-out person's talking video."""

    source: str
    driver: str
    photo: bool = False

    @property
    def name(self) -> str:
        stem = Path(self.source).stem + ("_photo" if self.photo else "")
        return f"{stem}__{Path(self.driver).stem}"


PAIRS = [
    Pair("sadtalker_WDA_KatieHill_000.mp4", "pcavs_Audio_Source_00104.mp4"),  # 512 ← 224 voice
    Pair("pcavs_Audio_Source_00104.mp4", "sadtalker_WDA_KatieHill_000.mp4"),
    Pair("deepavsr_00019.mp4", "pcavs_Pose_Source_741400163.mp4"),  # 160, 3/4 view
    Pair("vrt_face_4.mp4", "deepavsr_00019.mp4"),  # 700, 30 fps, 6.6 s: looped
    Pair("pcavs_Audio_Source_00086.mp4", "sadtalker_WDA_KatieHill_000.mp4"),  # 5.3 s: looped
    Pair("pcavs_Pose_Source_741400163.mp4", "deepavsr_00019.mp4"),
    Pair("vrt_face_4.mp4", "pcavs_Pose_Source_741400163.mp4"),
    Pair("sadtalker_WDA_KatieHill_000.mp4", "deepavsr_00019.mp4"),
    Pair("deepavsr_00019.mp4", "sadtalker_WDA_KatieHill_000.mp4"),
    Pair("pcavs_Audio_Source_00086.mp4", "pcavs_Audio_Source_00104.mp4"),
    Pair("vrt_face_4.mp4", "pcavs_Audio_Source_00104.mp4", photo=True),
]
SILENCE = {
    "sadtalker_WDA_KatieHill_000.mp4",
    "pcavs_Audio_Source_00104.mp4",
    "deepavsr_00019.mp4",
    "vrt_face_4.mp4",
}
VALIDATION_PERSONS = ("man_glasses_1", "woman_blonde_2", "man_plaid_1", "man_teal_bg_1", "man_grey_hair_1")
"""Five more persons, each with ≥ 8 s of talking video with its audio stream, for a second set of pairs.
The shipped models heard them: the bank engine must be given an audio model refitted without them
(`scripts/fit_mouth_shape.py --hold-out <these> --out FILE`), and the stylelipsync engine, whose demo model
was trained on them, is not scored on this set."""
_V = {
    "g": "sadtalker_WDA_BobMenendez_000.mp4",  # 512
    "b": "sadtalker_RD_Radio2_000.mp4",  # 512
    "p": "deepavsr_00016.mp4",  # 160
    "t": "pcavs_Audio_Source_681100216.mp4",  # 224
    "s": "sadtalker_WDA_EdMarkey0_000.mp4",  # 512
}
_VALIDATION_ORDER = ("gb", "bp", "pt", "ts", "sg", "gt", "bs", "pg", "tb", "sp")
VALIDATION_PAIRS = [Pair(_V[a], _V[b]) for a, b in _VALIDATION_ORDER]
VALIDATION_SILENCE = {_V["g"], _V["p"]}
FOLD_CLIPS = {
    "fold-a": (
        "latentsync_demo2_video.mp4",  # 1080×1920
        "pcavs_Pose_Source_00473.mp4",
        "pcavs_Pose_Source_00067.mp4",  # 4.6 s
        "r3dp_May_5s.mp4",  # 512
        "edtalk_mouth_source.mp4",
    ),
    "fold-b": (
        "latentsync_demo1_video.mp4",  # 1080×1920
        "pcavs_Pose_Source_620900105.mp4",  # 4.4 s
        "deepavsr_00001.mp4",  # 160
        "pcavs_Pose_Source_796100172.mp4",
        "styletalk_reagan_clip1.mp4",
    ),
    "fold-c": (
        "tpsmm_driving.mp4",  # 410
        "pcavs_Audio_Source_00015.mp4",
        "styletalk_Obama_clip2.mp4",
        "pcavs_Pose_Source_517600055.mp4",  # 4.5 s
        "vrt_face_2.mp4",  # 844
    ),
    "fold-d": (
        "livep_driving_d20.mp4",  # 480
        "vrt_face_1.mp4",  # 700
        "edtalk_pose_source2.mp4",
        "styletalk_KristiNoem.mp4",
        "styletalk_feifeili_clip1.mp4",
    ),
}
"""The other 20 persons in four groups of five, one talking clip each: with the held-out and validation sets,
every shared person drives two pairs (`benchmarks/eval_agreement_folds.py`). Each clip is dubbed with the
speech of the next and the one after next in its group. Many of these clips are shorter than 8 s: a driver
gives its whole length (≥ 4.4 s) here."""
FOLD_MIN_SECONDS = 4.0


@dataclass(frozen=True)
class PairSet:
    """Pairs whose persons an audio model must not have heard, and how they are checked."""

    pairs: list[Pair]
    persons: tuple[str, ...] | None  # None: read from the manifest (the persons of the pairs' clips)
    silence: set[str]
    min_seconds: float = MIN_SECONDS
    demo_network_unseen: bool = False
    """The shipped demo network never saw these persons, so the stylelipsync engine and the bank with its
    default audio model may be scored on them (the default audio model did hear them: pass --shape-model
    refitted without them for the bank's fair figure)."""


def fold_pairs(clips: tuple[str, ...]) -> list[Pair]:
    """Each clip dubbed with the speech of the next and the one after next (cyclically)."""
    n = len(clips)
    return [Pair(clips[i], clips[(i + step) % n]) for step in (1, 2) for i in range(n)]


PAIR_SETS = {
    "heldout": PairSet(PAIRS, HELD_OUT_PERSONS, SILENCE, demo_network_unseen=True),
    "validation": PairSet(VALIDATION_PAIRS, VALIDATION_PERSONS, VALIDATION_SILENCE),
    **{name: PairSet(fold_pairs(clips), None, set(), FOLD_MIN_SECONDS) for name, clips in FOLD_CLIPS.items()},
}
TARGETS = {"sharpness": 0.8, "motion": 0.85, "jitter": 1.1, "agreement": 0.35, "leak": 0.3}


def write_wav(path: Path, wave: np.ndarray) -> Path:
    """16 kHz mono int16 WAV."""
    wavfile.write(path, SR, (np.clip(wave, -1, 1) * 32767).astype(np.int16))
    return path


def git_commit() -> str:
    """Short commit of the checkout, marked when the working tree has changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes" if dirty else "")


def ratio(a: Any, b: Any) -> float | None:
    """a / b, or None when either is missing or b is not positive."""
    if a is None or b is None or not math.isfinite(a) or not math.isfinite(b) or b <= 0:
        return None
    return float(a / b)


def make_photo(pair: Pair, media: Path, work: Path, cache: Path) -> Path:
    """The source clip's frame with the most closed mouth (among detected faces) as a PNG."""
    target = work / f"{Path(pair.source).stem}_photo.png"
    if target.is_file():
        return target
    track = track_video(media / pair.source, cache_dir=cache)
    opening = mouth_opening(track.raw, track.detected)
    index = int(np.nanargmin(opening))
    image = grab_frames(media / pair.source, [index])[index]
    cv2.imwrite(str(target), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return target


def dub(
    pipe: LipSyncPipeline, engine: str, video: Path, audio: Path, out: Path, force: bool, **options: Any
) -> dict[str, Any]:
    """Dub (unless the output exists) and return the timing and the engine's report (kept in a sidecar)."""
    sidecar = out.with_suffix(".json")
    if out.is_file() and not force:
        return json.loads(sidecar.read_text()) if sidecar.is_file() else {"reused": True}
    result = pipe(video, audio, out, engine=engine, overwrite=True, **options)
    info = {
        "engine": result.engine,
        "frames": result.frames,
        "seconds": result.seconds,
        "frames_per_second": result.frames_per_second,
        "stage_seconds": result.stage_seconds,
        "warnings": result.warnings,
        "details": result.details,
        "size": [result.width, result.height],
    }
    sidecar.write_text(json.dumps(info, indent=1, default=float) + "\n")
    return info


def set_persons(pair_set: PairSet, manifest: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    """The persons of a pair set's clips, from the manifest's person_tag column."""
    return tuple(sorted({manifest[c]["person"] for p in pair_set.pairs for c in (p.source, p.driver)}))


def select_pairs(spec: str | None, pairs: list[Pair] = PAIRS) -> list[tuple[int, Pair]]:
    """All pairs; `N` = the first N; `i,j,...` = those (1-based) pairs."""
    numbered = list(enumerate(pairs, 1))
    if not spec:
        return numbered
    if "," not in spec:
        return numbered[: int(spec)]
    wanted = {int(x) for x in spec.split(",") if x.strip()}
    return [(i, p) for i, p in numbered if i in wanted]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="bank,stylelipsync", help="Comma list of engines to run.")
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    parser.add_argument("--work", type=Path, default=Path("/work/runs/eval_bank"))
    parser.add_argument("--cache", type=Path, default=Path("/work/runs/eval_cache"), help="Face track cache.")
    parser.add_argument(
        "--shape-model", type=Path, help="Audio → mouth-shape model file for the bank engine."
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="Driving audio length (≥ 8 s used).")
    parser.add_argument("--pairs", help="N (the first N pairs) or 1-based indices i,j,... (default: all).")
    parser.add_argument(
        "--pair-set",
        choices=sorted(PAIR_SETS),
        default="heldout",
        help="heldout: the five persons no shipped model heard; validation: five others (needs --shape-model "
        "refitted without them; bank engine only).",
    )
    parser.add_argument("--no-silence", action="store_true", help="Skip the silence-leak dubs.")
    parser.add_argument("--keep-silence", action="store_true", help="Silence dubs without the VAD gate.")
    parser.add_argument("--force", action="store_true", help="Dub again even where an output exists.")
    parser.add_argument("--label", default="", help="Name of this run in the report.")
    parser.add_argument("--results", type=Path, help="Append the Markdown section to this file.")
    args = parser.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    pair_set = PAIR_SETS[args.pair_set]
    if not pair_set.demo_network_unseen and (args.shape_model is None or engines != ["bank"]):
        raise SystemExit(
            f"--pair-set {args.pair_set}: the shipped models heard these persons. Give --engines bank and "
            "--shape-model FILE from scripts/fit_mouth_shape.py --hold-out <the set's persons> --out FILE "
            "(benchmarks/eval_agreement_folds.py does both)"
        )

    manifest = read_media_manifest(args.media / "MANIFEST.tsv")
    persons_of_set = pair_set.persons or set_persons(pair_set, manifest)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "sheets").mkdir(exist_ok=True)
    pipe = LipSyncPipeline.from_pretrained(device="cpu")
    if args.shape_model is not None:
        from stylelipsync.audio.mouth_shape_model import MouthShapeModel
        from stylelipsync.pipelines.engines.bank import MouthBankEngine

        shape_model = MouthShapeModel.load(args.shape_model)
        heard = set(persons_of_set) - set(str(shape_model.info.get("held_out", "")).split(","))
        if heard:
            raise SystemExit(
                f"{args.shape_model}: fitted with {sorted(heard)} of pair set {args.pair_set}; refit it with "
                "scripts/fit_mouth_shape.py --hold-out " + ",".join(persons_of_set) + " --out FILE"
            )
        pipe.use_engine(MouthBankEngine(shape_model=shape_model))
    for engine in engines:
        pipe.engine(engine)  # load before timing
    evaluator = Evaluator(EvalConfig(metrics=("sync", "sharpness", "jitter"), cache_dir=args.cache))
    speaker_real: dict[str, dict[str, Any]] = {}
    silenced: set[str] = set()
    rows = []
    started = time.perf_counter()
    for number, pair in select_pairs(args.pairs, pair_set.pairs):
        persons = manifest[pair.source]["person"], manifest[pair.driver]["person"]
        if persons[0] == persons[1] or not set(persons) <= set(persons_of_set):
            raise SystemExit(f"pair {pair}: persons {persons} must be two different held-out persons")
        source = (
            make_photo(pair, args.media, args.work, args.cache) if pair.photo else args.media / pair.source
        )
        driver = args.media / pair.driver
        seconds = min(probe(driver).duration or 0.0, args.seconds)
        if seconds < pair_set.min_seconds - 0.1:
            raise SystemExit(
                f"{pair.driver}: {seconds:.1f} s of speech, fewer than {pair_set.min_seconds:g} s"
            )
        speech = args.media / manifest[pair.driver]["audio"] if manifest[pair.driver]["audio"] else driver
        drive = write_wav(args.work / f"{pair.name}__drive.wav", load_audio(speech, SR)[: int(seconds * SR)])
        silence = None
        silent_source = pair.source in pair_set.silence and pair.source not in silenced
        if not args.no_silence and not pair.photo and silent_source:
            silenced.add(pair.source)
            silence = write_silence(args.work / f"silence_{seconds:g}s.wav", seconds, SR)
        source_values = evaluator.evaluate(Job(f"{pair.name}/input", source)).values
        if pair.driver not in speaker_real:
            speaker_real[pair.driver] = evaluator.evaluate(Job(pair.driver, driver, audio=speech)).values
        row: dict[str, Any] = {
            "number": number,
            "pair": pair.name,
            "source": pair.source,
            "photo": pair.photo,
            "driver": pair.driver,
            "persons": persons,
            "seconds": seconds,
            "resolution": [probe(source).width, probe(source).height],
            "input": source_values,
            "speaker_real": speaker_real[pair.driver],
            "engines": {},
        }
        for engine in engines:
            out = args.work / f"{pair.name}__{engine}.mp4"
            timing = dub(pipe, engine, source, drive, out, args.force)
            silent_out = None
            if silence is not None:
                silent_out = args.work / f"{pair.name}__{engine}__silence.mp4"
                dub(pipe, engine, source, silence, silent_out, args.force, keep_silence=args.keep_silence)
            values = evaluator.evaluate(
                Job(f"{pair.name}/{engine}", out, audio=drive, silent=silent_out, speaker=driver)
            ).values
            row["engines"][engine] = {
                "timing": timing,
                "values": values,
                "chance": chance(source, out, driver, args.cache),
                "sheet": str(
                    write_contact_sheet(
                        args.work / "sheets" / f"{pair.name}__{engine}.png",
                        source,
                        [(engine, out)],
                        cache_dir=args.cache,
                    )
                ),
            }
            print(f"[{number}] {pair.name} {engine}: {summary_line(row, engine)}", flush=True)
        rows.append(row)
    report = render(rows, engines, args, time.perf_counter() - started)
    (args.work / "eval_bank.json").write_text(json.dumps(rows, indent=1, default=float) + "\n")
    print(report)
    if args.results:
        with args.results.open("a") as fh:
            fh.write(report)


def input_on_timeline(source: Path, dubbed: Path, cache: Path) -> tuple[np.ndarray, float]:
    """The input's real mouth opening on the dub's frames (ping-pong, as the pipeline loops) and its rate."""
    track = track_video(source, cache_dir=cache)
    with VideoReader(dubbed) as reader:
        num_output, fps = len(reader), reader.fps
    timeline = source_indices(num_output, len(track), LoopMode.PINGPONG)
    return mouth_opening(track.raw, track.detected)[timeline], fps


def chance(source: Path, dubbed: Path, driver: Path, cache: Path) -> float | None:
    """The input's real mouth on the dub's timeline vs the real mouth of the driver's speaker."""
    mouth, fps = input_on_timeline(source, dubbed, cache)
    speaker = track_video(driver, fps=fps, cache_dir=cache)
    best = lagged_correlation(mouth, mouth_opening(speaker.raw, speaker.detected), max_lag=SPEAKER_MAX_LAG)
    return best.correlation if math.isfinite(best.correlation) else None


def figures(row: dict[str, Any], engine: str) -> dict[str, float | None]:
    """The table's figures of one pair and engine (None = not available)."""
    e, src = row["engines"][engine], row["input"]
    v = e["values"]
    return {
        "fps": e["timing"].get("frames_per_second"),
        "sharpness": ratio(v.get("mouth_sharpness"), src.get("mouth_sharpness")),
        "motion": None if row["photo"] else ratio(v.get("mouth_motion"), src.get("mouth_motion")),
        "jitter": None if row["photo"] else ratio(v.get("mouth_jitter"), src.get("mouth_jitter")),
        "motion_abs": v.get("mouth_motion"),
        "jitter_abs": v.get("mouth_jitter"),
        "agreement": v.get("sync_speaker"),
        "agreement_lag": v.get("sync_speaker_lag"),
        "chance": e["chance"],
        "pred_real": row["speaker_real"].get("sync_pred"),
        "pred_dubbed": v.get("sync_pred"),
        "leak": v.get("leak_ratio"),
    }


def summary_line(row: dict[str, Any], engine: str) -> str:
    """One line of figures for the progress output."""
    return ", ".join(f"{k} {fmt(x)}" for k, x in figures(row, engine).items() if k != "agreement_lag")


def fmt(x: float | None, signed: bool = False, digits: int = 2) -> str:
    """A number for the table, "–" when missing."""
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _mean(values: list[float | None]) -> tuple[float, float, int]:
    vals = [float(x) for x in values if x is not None and math.isfinite(x)]
    return (float(np.mean(vals)), float(np.std(vals)), len(vals)) if vals else (math.nan, math.nan, 0)


def _verdict(key: str, mean: float) -> str:
    if not math.isfinite(mean):
        return ""
    target = TARGETS[key]
    ok = mean <= target if key == "jitter" else (mean < target if key == "leak" else mean >= target)
    return " ✓" if ok else " ✗"


def _cell(cells: dict[str, tuple[float, float, int]], key: str, signed: bool = False) -> str:
    """Mean ± std of a summary cell, with the verdict against the target where there is one."""
    mu, sd, n = cells[key]
    if not n:
        return "–"
    text = f"{fmt(mu, signed)} ± {sd:.2f}"
    return text + (_verdict(key, mu) if key in TARGETS else "") + (f" (n={n})" if key == "leak" else "")


def render(rows: list[dict[str, Any]], engines: list[str], args: argparse.Namespace, seconds: float) -> str:
    """Markdown: per engine, one row per pair, the mean over video pairs against the targets, the photo."""
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        "",
        f"## eval_bank.py — {args.label or ', '.join(engines)} — {stamp} — commit {git_commit()}",
        "",
        f"{len(rows)} pairs of "
        + (
            "held-out persons"
            if args.pair_set == "heldout"
            else f"the persons of pair set `{args.pair_set}` (held out of the given audio model)"
        )
        + " (source clip dubbed with another such person's speech, "
        f"≤ {args.seconds:g} s, first {PAIR_SETS[args.pair_set].min_seconds:g}+ s of the driver video), "
        f"engines {', '.join(engines)}"
        + (f", bank shape model `{args.shape_model}`" if args.shape_model else "")
        + f"; {seconds / 60:.1f} min on 2 shared CPU cores. Ratios are dubbed / input. *Agreement* = "
        "`sync_speaker` (dubbed mouth vs the real mouth of the driver's speaker, lag in brackets); "
        "*chance* = the input's real mouth on the same timeline vs that speaker; *pred real / pred dub* = "
        "`sync_pred` of the driver video with its own audio (the real ceiling) / of the dub with the driving "
        "audio. Leak = mouth motion on digital silence / on speech"
        + (" (VAD gate off)" if args.keep_silence else " (default options, VAD gate on)")
        + ". Contact sheets in the work dir `sheets/`.",
    ]
    for engine in engines:
        lines += [
            "",
            f"### engine `{engine}`",
            "",
            "| # | source (px) | driver | frames/s | sharpness × | motion × | jitter × | **agreement** | "
            "chance | pred real | pred dub | leak |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        video_rows = [r for r in rows if not r["photo"] and engine in r["engines"]]
        for r in rows:
            if engine not in r["engines"]:
                continue
            f = figures(r, engine)
            lag = f["agreement_lag"]
            motion = fmt(f["motion"]) if not r["photo"] else f"({fmt(f['motion_abs'], digits=3)})"
            jitter = fmt(f["jitter"]) if not r["photo"] else f"({fmt(f['jitter_abs'], digits=4)})"
            lines.append(
                f"| {r['number']} | `{Path(r['source']).stem}`{' photo' if r['photo'] else ''} "
                f"({r['resolution'][0]}) | `{Path(r['driver']).stem}` | {fmt(f['fps'], digits=1)} | "
                f"{fmt(f['sharpness'])} | {motion} | {jitter} | **{fmt(f['agreement'], True)}**"
                + (f" ({int(lag):+d})" if lag is not None else "")
                + f" | {fmt(f['chance'], True)} | {fmt(f['pred_real'], True)} | "
                f"{fmt(f['pred_dubbed'], True)} | {fmt(f['leak'])} |"
            )
        keys = (*TARGETS, "fps", "chance", "pred_real", "pred_dubbed")
        cells = {k: _mean([figures(r, engine)[k] for r in video_rows]) for k in keys}
        lines.append(
            f"| mean of {len(video_rows)} video pairs | | | {fmt(cells['fps'][0], digits=1)} | "
            f"{_cell(cells, 'sharpness')} | {_cell(cells, 'motion')} | {_cell(cells, 'jitter')} | "
            f"**{_cell(cells, 'agreement', True)}** | {_cell(cells, 'chance', True)} | "
            f"{_cell(cells, 'pred_real', True)} | {_cell(cells, 'pred_dubbed', True)} | "
            f"{_cell(cells, 'leak')} |"
        )
        lines.append(
            "| target | | | | ≥ 0.80 | ≥ 0.85 | ≤ 1.10 | ≥ +0.35 | | | | < 0.30 |",
        )
        notes = [
            f"#{r['number']}: {w}"
            for r in rows
            if engine in r["engines"]
            for w in r["engines"][engine]["timing"].get("warnings", [])
        ]
        if notes:
            lines += ["", "Warnings from the engine:", "", *(f"- {n}" for n in notes)]
    if len(engines) > 1:
        lines += ["", speed_line(rows, engines)]
    return "\n".join(lines) + "\n"


def speed_line(rows: list[dict[str, Any]], engines: list[str]) -> str:
    """Frames/s of the first engine over the others' on the same pairs (same run)."""
    first, others = engines[0], engines[1:]
    parts = []
    for other in others:
        pairs = [
            (
                r["engines"][first]["timing"].get("frames_per_second"),
                r["engines"][other]["timing"].get("frames_per_second"),
            )
            for r in rows
            if first in r["engines"] and other in r["engines"]
        ]
        ratios = [a / b for a, b in pairs if a and b]
        if ratios:
            parts.append(
                f"`{first}` runs at ×{np.mean(ratios):.1f} the frames/s of `{other}` "
                f"(mean over {len(ratios)} pairs)"
            )
    return ("Speed: " + "; ".join(parts) + ".") if parts else ""


if __name__ == "__main__":
    main()
