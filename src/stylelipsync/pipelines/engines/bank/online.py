"""Choose bank entries frame by frame as the speech arrives: fixed-lag dynamic programming.

The offline `select.select` decides every frame knowing the whole clip. Live, frame t must be decided while
only `lag` more frames of wanted shapes are known. `OnlineSelector` keeps the entry it committed last and
the unary costs of the frames not yet committed; each new frame re-runs the same Viterbi recursion
(`select.transition`, same costs and states) over those few frames starting from the committed entry and its
direction of play, and commits the first of them along the best path. The committed path is therefore
always a valid path of the offline model, with its transitions paid for, and each step costs O(lag · N).
"""

from __future__ import annotations

from collections import deque

import numpy as np
from numpy.typing import NDArray

from stylelipsync.pipelines.engines.bank.select import (
    SelectionCosts,
    Step,
    playable,
    trace,
    transition,
    unary_costs,
)


class OnlineSelector:
    """Commits one entry per frame, `lag` frames after that frame's wanted shape was pushed."""

    def __init__(
        self,
        bank_z: NDArray[np.floating],
        bank_pose: NDArray[np.floating],
        follows: NDArray[np.bool_],
        costs: SelectionCosts | None = None,
        lag: int = 2,
    ) -> None:
        if lag < 0:
            raise ValueError(f"lag must be ≥ 0 frames, got {lag}")
        n = len(bank_z)
        if n == 0:
            raise ValueError("the bank is empty")
        self.bank_z, self.bank_pose, self.lag = bank_z, bank_pose, lag
        self.costs = costs or SelectionCosts()
        self._fwd_ok, self._back_ok = playable(follows)
        self._pending: deque[tuple[NDArray[np.float64], float]] = deque()
        """(unary costs, speech) of the frames pushed but not committed."""
        self._last: int | None = None
        self._state = 0
        """Direction of play (0 forward, 1 backward) the last committed entry was reached in."""
        self.committed = 0

    def push(
        self, target: NDArray[np.floating], pose: NDArray[np.floating], speech: float = 1.0
    ) -> list[int]:
        """Add frame's wanted z-shape (D,), the target frame's head pose (3,) and its speech gate; returns
        the entries committed by it (one once `lag` frames are pending, else none)."""
        unary = unary_costs(np.asarray(target), np.asarray(pose), self.bank_z, self.bank_pose, self.costs)
        self._pending.append((unary, float(speech)))
        out: list[int] = []
        while len(self._pending) > self.lag:
            out.append(self._commit())
        return out

    def flush(self) -> list[int]:
        """Commit every pending frame (end of the stream)."""
        return [self._commit() for _ in range(len(self._pending))]

    def _commit(self) -> int:
        """Viterbi over the pending frames from the last committed entry; commit the first pending frame."""
        n = len(self.bank_z)
        first_unary, first_speech = self._pending[0]
        if self._last is None:
            fwd, back = first_unary.copy(), first_unary.copy()
        else:
            start = [np.full(n, np.inf), np.full(n, np.inf)]
            start[self._state][self._last] = 0.0
            fwd, back, _ = transition(
                start[0], start[1], self._fwd_ok, self._back_ok, self.costs, first_speech
            )
            fwd, back = fwd + first_unary, back + first_unary
        steps: list[Step] = []
        for unary, speech in list(self._pending)[1:]:
            fwd, back, step = transition(fwd, back, self._fwd_ok, self._back_ok, self.costs, speech)
            fwd, back = fwd + unary, back + unary
            steps.append(step)
        j = int(np.argmin(np.minimum(fwd, back)))
        state = int(back[j] < fwd[j])
        for step in reversed(steps):
            j, state = trace(step, j, state)
        self._pending.popleft()
        self._last, self._state = j, state
        self.committed += 1
        return j


__all__ = ["OnlineSelector"]
