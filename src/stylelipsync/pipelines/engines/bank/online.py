"""Choose bank entries frame by frame as the speech arrives: fixed-lag dynamic programming.

The offline `select.select` decides every frame knowing the whole clip. Live, frame t must be decided while
only `lag` more frames of wanted shapes are known. `OnlineSelector` keeps the entry it committed last and
the unary costs of the frames not yet committed; each new frame re-runs the same Viterbi recursion (same
costs as `select`) over those few frames starting from the committed entry, and commits the first of
them along the best path. The committed path is therefore always a valid path of the offline model, with
its transitions paid for, and each step costs O(lag · N).
"""

from __future__ import annotations

from collections import deque

import numpy as np
from numpy.typing import NDArray

from stylelipsync.pipelines.engines.bank.select import (
    BACKWARD,
    FORWARD,
    FREEZE,
    JUMP,
    SelectionCosts,
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
        fwd = np.asarray(follows, dtype=bool).copy()
        fwd[0] = False
        self._fwd_ok = fwd
        self._back_ok = np.zeros(n, dtype=bool)
        self._back_ok[:-1] = fwd[1:]
        self._pending: deque[tuple[NDArray[np.float64], float]] = deque()
        """(unary costs, speech) of the frames pushed but not committed."""
        self._last: int | None = None
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

    def _transition(self, score: NDArray[np.float64], speech: float) -> tuple[NDArray[np.float64], NDArray]:
        """Best score of reaching each entry from `score` of the previous frame, and how (kind, jump-from)."""
        n, c = len(score), self.costs
        inf = np.inf
        cand = np.full((4, n), inf)
        cand[FORWARD, 1:] = np.where(self._fwd_ok[1:], score[:-1] + c.forward, inf)
        cand[BACKWARD, :-1] = np.where(self._back_ok[:-1], score[1:] + c.backward, inf)
        cand[FREEZE] = score + c.freeze * speech
        best = int(np.argmin(score))
        cand[JUMP] = score[best] + c.jump
        kind = np.argmin(cand, axis=0)
        return cand[kind, np.arange(n)], np.stack([kind, np.full(n, best)])

    def _commit(self) -> int:
        """Viterbi over the pending frames from the last committed entry; commit the first pending frame."""
        n = len(self.bank_z)
        if self._last is None:
            score = self._pending[0][0].copy()
        else:
            start = np.full(n, np.inf)
            start[self._last] = 0.0
            score, _ = self._transition(start, self._pending[0][1])
            score = score + self._pending[0][0]
        steps: list[NDArray] = []
        for unary, speech in list(self._pending)[1:]:
            score, how = self._transition(score, speech)
            score = score + unary
            steps.append(how)
        j = int(np.argmin(score))
        for how in reversed(steps):
            kind = how[0, j]
            if kind == FORWARD:
                j -= 1
            elif kind == BACKWARD:
                j += 1
            elif kind == JUMP:
                j = int(how[1, j])
        self._pending.popleft()
        self._last = j
        self.committed += 1
        return j


__all__ = ["OnlineSelector"]
