"""The pair sets of `benchmarks/eval_bank.py`: six groups of five persons, together every shared person once.

`benchmarks/eval_agreement_folds.py` scores each group with audio models refitted without it, so a person in
two groups, or one left out, would make its cross-validated agreement wrong without any error."""

from __future__ import annotations

import csv
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import eval_bank  # noqa: E402


@pytest.fixture(scope="module")
def manifest(media_dir: Path) -> dict[str, dict[str, str]]:
    with open(media_dir / "MANIFEST.tsv", newline="") as fh:
        return {row["file"]: row for row in csv.DictReader(fh, delimiter="\t") if row["kind"] == "talking_av"}


def persons_of(pair_set: eval_bank.PairSet, manifest: dict[str, dict[str, str]]) -> set[str]:
    return {manifest[c]["person_tag"] for p in pair_set.pairs for c in (p.source, p.driver)}


def test_groups_cover_every_person_once(manifest: dict[str, dict[str, str]]) -> None:
    groups = {name: persons_of(s, manifest) for name, s in eval_bank.PAIR_SETS.items()}
    assert all(len(g) == 5 for g in groups.values()), groups
    counts = Counter(p for g in groups.values() for p in g)
    assert max(counts.values()) == 1, [p for p, n in counts.items() if n > 1]
    assert set(counts) == {row["person_tag"] for row in manifest.values()}


def test_declared_persons_match_the_clips(manifest: dict[str, dict[str, str]]) -> None:
    for name, pair_set in eval_bank.PAIR_SETS.items():
        if pair_set.persons is not None:
            assert set(pair_set.persons) == persons_of(pair_set, manifest), name


def test_pairs_are_two_persons_with_enough_speech(manifest: dict[str, dict[str, str]]) -> None:
    for name, pair_set in eval_bank.PAIR_SETS.items():
        for pair in pair_set.pairs:
            source, driver = manifest[pair.source], manifest[pair.driver]
            assert source["person_tag"] != driver["person_tag"], (name, pair)
            assert float(driver["duration_s"]) >= pair_set.min_seconds - 0.1, (name, pair)


def test_fold_persons_drive_and_are_dubbed_twice() -> None:
    for name, clips in eval_bank.FOLD_CLIPS.items():
        pairs = eval_bank.PAIR_SETS[name].pairs
        assert len(pairs) == len(set(pairs)) == 10
        assert Counter(p.driver for p in pairs) == Counter({c: 2 for c in clips})
        assert Counter(p.source for p in pairs) == Counter({c: 2 for c in clips})
