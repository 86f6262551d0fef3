"""The frame store returns exactly what was stored, in any order, and leaves no file behind."""

from __future__ import annotations

import numpy as np
import pytest

from stylelipsync.media.frame_store import FrameStore


def test_random_access_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(6)]
    with FrameStore(5, 7, directory=tmp_path) as store:
        for f in frames:
            store.append(f)
        assert len(store) == 6
        for i in [5, 0, 3, 3, 1, 4, 2]:
            np.testing.assert_array_equal(store[i], frames[i])
        with pytest.raises(IndexError):
            store[6]
        with pytest.raises(ValueError):
            store.append(np.zeros((5, 8, 3), np.uint8))
        assert list(tmp_path.iterdir()) == []  # unlinked at creation: nothing to leave behind if killed
    assert store._fd == -1
