"""Choose one bank entry per output frame: dynamic programming (Viterbi) over the whole timeline.

Cost of showing entry j at output frame t (the unary term):

    Σ_k w_k (z_jk − ẑ_tk)²  +  w_pose · |(pose_j − pose_t) / σ_pose|²  (yaw and pitch)

where ẑ_t is the wanted mouth shape (from the speech, closed on silence) and pose_t the head pose of the
frame the mouth is pasted into. Moving from entry i at t−1 to j at t costs:

* `forward`: j is the frame after i in the same video (the bank plays on, natural motion): the cheapest;
* `backward`: j is the frame before i (played backwards, still smooth);
* `freeze`: j = i (a held mouth looks dead, so not free);
* `jump`: anything else (a cut between two recordings of the mouth).

With these four kinds every step is O(N) (the best jump is one minimum over the previous column), so a
10-minute video (15,000 frames) against a 3,000-entry bank takes seconds. Back-pointers are one byte per
(frame, entry) plus one int per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FORWARD, BACKWARD, FREEZE, JUMP = 0, 1, 2, 3


@dataclass(frozen=True)
class SelectionCosts:
    """Weights of the selection (z-units² for shapes, see the module docstring)."""

    shape_weights: tuple[float, ...] = (4.0, 0.1, 0.1, 0.1, 0.05, 0.05)
    """Opening, width, pc1..pc4. Opening dominates: it is what the speech predicts best and what a viewer
    reads as sync (on 20 held-out pairs, raising it from 2 to 4 and lowering width from 0.3 to 0.1 made the
    chosen mouths follow the real speaker's a little better, +0.01, with fewer cuts)."""
    pose_weight: float = 1.0
    pose_sigma_deg: float = 10.0
    forward: float = 0.0
    backward: float = 0.3
    freeze: float = 0.5
    jump: float = 3.0
    """A cut: the mouth changes recording (and the landmark noise of two frames meets). 2.5 cut 1.7-2 times
    a second of speech; 4 cut 1.3 times but left a photo enrolled with a short bank video reshaped on more
    than half of its frames (the segments played on past the openings they show)."""


def unary_costs(
    target: NDArray[np.floating],
    target_pose: NDArray[np.floating],
    bank_z: NDArray[np.floating],
    bank_pose: NDArray[np.floating],
    costs: SelectionCosts,
) -> NDArray[np.float64]:
    """(N,) cost of each entry for one frame: `target` (D,), `target_pose` (3,) (NaN pose = no pose term)."""
    dims = min(len(costs.shape_weights), bank_z.shape[1], target.shape[0])
    w = np.asarray(costs.shape_weights[:dims])
    cost = ((bank_z[:, :dims] - target[None, :dims]) ** 2) @ w
    if np.isfinite(target_pose[:2]).all():
        d = (bank_pose[:, :2] - target_pose[None, :2]) / costs.pose_sigma_deg
        cost = cost + costs.pose_weight * np.nan_to_num((d**2).sum(axis=1), nan=4.0)
    return np.asarray(cost, dtype=np.float64)


def select(
    target: NDArray[np.floating],
    target_pose: NDArray[np.floating],
    bank_z: NDArray[np.floating],
    bank_pose: NDArray[np.floating],
    follows: NDArray[np.bool_],
    costs: SelectionCosts = SelectionCosts(),
    speech: NDArray[np.floating] | None = None,
) -> NDArray[np.int64]:
    """(T,) entry index per output frame minimising the total cost (module docstring).

    target (T, D) wanted z-shapes; target_pose (T, 3); bank_z (N, D); bank_pose (N, 3); follows (N,) True
    where entry j is the frame after entry j−1 of the same video; speech (T,) in [0, 1] scales the freeze
    cost (a mouth held still through a pause is natural: freezing is free on silence; default all speech).
    """
    t_len, n = target.shape[0], bank_z.shape[0]
    if n == 0:
        raise ValueError("the bank is empty")
    out = np.zeros(t_len, dtype=np.int64)
    if t_len == 0:
        return out
    fwd_ok = np.asarray(follows, dtype=bool).copy()
    fwd_ok[0] = False
    back_ok = np.zeros(n, dtype=bool)
    back_ok[:-1] = fwd_ok[1:]
    kind = np.empty((t_len, n), dtype=np.uint8)
    jump_from = np.zeros(t_len, dtype=np.int64)
    score = unary_costs(target[0], target_pose[0], bank_z, bank_pose, costs)
    kind[0] = JUMP
    inf = np.inf
    for t in range(1, t_len):
        best = int(np.argmin(score))
        jump_from[t] = best
        cand = np.full((4, n), inf)
        cand[FORWARD, 1:] = np.where(fwd_ok[1:], score[:-1] + costs.forward, inf)
        cand[BACKWARD, :-1] = np.where(back_ok[:-1], score[1:] + costs.backward, inf)
        cand[FREEZE] = score + costs.freeze * (1.0 if speech is None else float(speech[t]))
        cand[JUMP] = score[best] + costs.jump
        k = np.argmin(cand, axis=0)
        kind[t] = k
        score = cand[k, np.arange(n)] + unary_costs(target[t], target_pose[t], bank_z, bank_pose, costs)
    j = int(np.argmin(score))
    for t in range(t_len - 1, -1, -1):
        out[t] = j
        k = kind[t, j]
        if t == 0:
            break
        if k == FORWARD:
            j -= 1
        elif k == BACKWARD:
            j += 1
        elif k == JUMP:
            j = int(jump_from[t])
    return out


def cuts(chosen: NDArray[np.int64], follows: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """(T,) True where frame t does not continue frame t−1's entry by a forward, backward or frozen step."""
    out = np.zeros(len(chosen), dtype=bool)
    if len(chosen) < 2:
        return out
    prev, cur = chosen[:-1], chosen[1:]
    fwd = (cur == prev + 1) & follows[np.clip(cur, 0, len(follows) - 1)]
    back = (cur == prev - 1) & follows[np.clip(prev, 0, len(follows) - 1)]
    out[1:] = ~(fwd | back | (cur == prev))
    return out
