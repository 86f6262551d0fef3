"""Are `generate`'s outputs byte-identical between two commits? The check a refactor must pass (issue #22).

Checks out each commit into a temporary git worktree and runs `stylelipsync generate` from it, with its own
`src/` first on the path and the current environment's packages. It does this for the stylelipsync engine
(dubbed video and face crops) and for the bank engine on one shared clip. Then it compares the SHA-256 of
every file. Exit code 1 if any file differs.

    python benchmarks/bit_identity.py --before 7027eb8 --after HEAD --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
RUNS = {
    "stylelipsync": ["--engine", "stylelipsync", "--crop-output", "{out}-crops.mp4"],
    "bank": ["--engine", "bank"],
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dub(tree: Path, out: Path, video: Path, audio: Path) -> dict[str, str]:
    """Run every engine of `RUNS` with the code in `tree`; file name → SHA-256."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    hashes = {}
    for engine, extra in RUNS.items():
        stem = out / engine
        flags = [f.format(out=stem) for f in extra]
        cmd = [sys.executable, "-m", "stylelipsync.cli", "generate", "-v", str(video), "-a", str(audio)]
        subprocess.run([*cmd, "-o", f"{stem}.mp4", "--overwrite", *flags], env=env, check=True, cwd=tree)
        for path in sorted(out.glob(f"{engine}*.mp4")):
            hashes[path.name] = sha256(path)
    return hashes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="Commit to compare against.")
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--video", type=Path, default=MEDIA / "vrt_face_2.mp4")
    parser.add_argument("--audio", type=Path, default=MEDIA / "musetalk_eng.wav")
    parser.add_argument("--results", type=Path, help="Append the Markdown section to this file.")
    args = parser.parse_args()
    revs = {
        name: subprocess.run(
            ["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        for name, rev in (("before", args.before), ("after", args.after))
    }
    hashes = {}
    with tempfile.TemporaryDirectory(prefix="bit_identity_") as tmp:
        for name, rev in revs.items():
            tree, out = Path(tmp) / f"tree-{name}", Path(tmp) / f"out-{name}"
            out.mkdir()
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), rev], cwd=REPO, check=True)
            try:
                hashes[name] = dub(tree, out, args.video.resolve(), args.audio.resolve())
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=True)
    rows = [
        f"| `{file}` | `{hashes['before'].get(file, '–')[:16]}` | `{hashes['after'].get(file, '–')[:16]}` | "
        + ("identical" if hashes["before"].get(file) == hashes["after"].get(file) else "**differs**")
        + " |"
        for file in sorted(set(hashes["before"]) | set(hashes["after"]))
    ]
    same = hashes["before"] == hashes["after"]
    verdict = "**byte-identical**" if same else "**outputs differ**"
    text = (
        f"\n## bit_identity.py: generate before and after a refactor ({dt.date.today()})\n\n"
        f"`{args.video.name}` dubbed with `{args.audio.name}`, "
        f"commit `{revs['before']}` vs `{revs['after']}`: {verdict}.\n\n"
        "| file | SHA-256 before | SHA-256 after | |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    print(text)
    if args.results is not None:
        with args.results.open("a") as fh:
            fh.write(text)
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
