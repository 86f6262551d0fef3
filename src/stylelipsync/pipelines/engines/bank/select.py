"""Choose one bank entry per output frame: dynamic programming (Viterbi) over the whole timeline.

Cost of showing entry j at output frame t (the unary term):

    Σ_k w_k (z_jk − ẑ_tk)²  +  w_pose · |(pose_j − pose_t) / σ_pose|²  (yaw and pitch)

where ẑ_t is the wanted mouth shape (from the speech, closed on silence) and pose_t the head pose of the
frame the mouth is pasted into. Moving from entry i at t−1 to j at t costs:

* `forward`: j is the frame after i in the same video (the bank plays on, natural motion): the cheapest;
* `backward`: j is the frame before i (played backwards, still smooth);
* `freeze`: j = i (a held mouth looks dead, so not free);
* `jump`: anything else (a cut between two recordings of the mouth);
* plus `turn` for a forward step after a backward one or the other way round (a reversal, a freeze in
  between or not): rocking the bank back and forth to follow every wobble of the wanted opening reverses the
  mouth's motion at each turn, which a viewer (and `evaluation.jitter`) sees as a jumping mouth.

Each entry has two states, reached playing forward or backward (a freeze keeps the state, a jump lands in
both), so every step is O(N): the best jump is one minimum over the previous column (the best entry that is
not a step away from where it lands), and a 10-minute video (15,000 frames) against a 3,000-entry bank takes
seconds. Back-pointers are one byte per (frame, entry) plus four ints per frame. `transition` and `trace`
are that programme's one frame forward and back, shared with the live selection (`online`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FORWARD, BACKWARD, FREEZE, JUMP, FORWARD_TURN, BACKWARD_TURN = 0, 1, 2, 3, 4, 5
"""Step kinds; the `_TURN` ones come from the other direction of play (a reversal)."""
SOURCES = 4
"""A jump comes from the cheapest entry of the previous frame that is not a freeze, forward or backward step
away from where it lands: one of the 4 cheapest (at most 3 are such steps away)."""


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
    turn: float = 0.5
    """A reversal: a forward step after a backward one or the other way round (a freeze in between
    included). Without it the bank reversed 7-10 times a second on the held-out pairs (backward steps cost
    only 0.3), and the frames around reversals carried the mouth's extra jitter; 0.5 cut reversals to 1-2 a
    second and the mouth's jitter from ×1.13 to ×1.07 of the input, agreement unchanged (0.3-1.0 all gave
    ×1.04-1.07; from 0.75 on, agreement fell by about 0.01; benchmarks/RESULTS.md)."""


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


def playable(follows: NDArray[np.bool_]) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(N,) where entry j can be reached by a forward step (from j−1) and (N,) where by a backward step (from
    j+1), from `follows` (N,)."""
    fwd_ok = np.asarray(follows, dtype=bool).copy()
    fwd_ok[0] = False
    back_ok = np.zeros(len(fwd_ok), dtype=bool)
    back_ok[:-1] = fwd_ok[1:]
    return fwd_ok, back_ok


@dataclass
class Step:
    """Back-pointers of one frame of the programme (see `transition`)."""

    code: NDArray[np.uint8]
    """(N,) per entry: the forward state's step kind (bits 0-2), the backward state's (bits 3-5) and the rank
    in `sources` of the entry a jump came from (bits 6-7)."""
    sources: NDArray[np.int64]
    """The previous frame's `SOURCES` cheapest entries, cheapest first: where jumps come from."""
    states: NDArray[np.uint8]
    """Their states (0 forward, 1 backward)."""


def transition(
    fwd: NDArray[np.float64],
    back: NDArray[np.float64],
    fwd_ok: NDArray[np.bool_],
    back_ok: NDArray[np.bool_],
    costs: SelectionCosts,
    speech: float = 1.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64], Step]:
    """One frame of the programme: the best cost of reaching each entry in the forward and in the backward
    state from the previous frame's (N,) `fwd` and `back` costs (without this frame's unary term), and how."""
    n = len(fwd)
    inf = np.inf
    cols = np.arange(n)
    both = np.minimum(fwd, back)
    count = min(SOURCES, n)
    top = np.argpartition(both, count - 1)[:count] if count < n else np.arange(n)
    top = top[np.argsort(both[top], kind="stable")]
    # A jump is a cut: it comes from the cheapest entry that is not a step away from where it lands (only the
    # at most 3 entries a step away from the cheapest need another source).
    jump = np.full(n, both[top[0]] + costs.jump)
    rank = np.zeros(n, dtype=np.uint8)
    for j in _step_away(int(top[0]), fwd_ok, back_ok):
        r = next((r for r in range(1, count) if not _is_step(int(top[r]), j, fwd_ok, back_ok)), None)
        jump[j] = inf if r is None else both[top[r]] + costs.jump
        rank[j] = 0 if r is None else r
    freeze = costs.freeze * speech
    cand = np.full((6, n), inf)
    cand[FORWARD, 1:] = np.where(fwd_ok[1:], fwd[:-1] + costs.forward, inf)
    cand[FORWARD_TURN, 1:] = np.where(fwd_ok[1:], back[:-1] + costs.forward + costs.turn, inf)
    cand[FREEZE] = fwd + freeze
    cand[JUMP] = jump
    k_fwd = np.argmin(cand, axis=0)
    new_fwd = cand[k_fwd, cols]
    cand.fill(inf)
    cand[BACKWARD, :-1] = np.where(back_ok[:-1], back[1:] + costs.backward, inf)
    cand[BACKWARD_TURN, :-1] = np.where(back_ok[:-1], fwd[1:] + costs.backward + costs.turn, inf)
    cand[FREEZE] = back + freeze
    cand[JUMP] = jump
    k_back = np.argmin(cand, axis=0)
    new_back = cand[k_back, cols]
    code = k_fwd.astype(np.uint8) | (k_back.astype(np.uint8) << 3) | (rank << 6)
    return new_fwd, new_back, Step(code, top, (back[top] < fwd[top]).astype(np.uint8))


def trace(step: Step, j: int, state: int) -> tuple[int, int]:
    """The entry and state of the previous frame on the best path through entry j in `state` at this one."""
    code = int(step.code[j])
    k = (code >> (3 * state)) & 0b111
    if k in (FORWARD, FORWARD_TURN):
        j -= 1
    elif k in (BACKWARD, BACKWARD_TURN):
        j += 1
    if k in (FORWARD_TURN, BACKWARD_TURN):
        state = 1 - state
    elif k == JUMP:
        r = code >> 6
        j, state = int(step.sources[r]), int(step.states[r])
    return j, state


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
    fwd_ok, back_ok = playable(follows)
    count = min(SOURCES, n)
    codes = np.empty((t_len, n), dtype=np.uint8)
    sources = np.zeros((t_len, count), dtype=np.int64)
    states = np.zeros((t_len, count), dtype=np.uint8)
    fwd = unary_costs(target[0], target_pose[0], bank_z, bank_pose, costs)
    back = fwd.copy()
    for t in range(1, t_len):
        gate = 1.0 if speech is None else float(speech[t])
        fwd, back, step = transition(fwd, back, fwd_ok, back_ok, costs, gate)
        codes[t], sources[t], states[t] = step.code, step.sources, step.states
        unary = unary_costs(target[t], target_pose[t], bank_z, bank_pose, costs)
        fwd, back = fwd + unary, back + unary
    j = int(np.argmin(np.minimum(fwd, back)))
    state = int(back[j] < fwd[j])
    for t in range(t_len - 1, 0, -1):
        out[t] = j
        j, state = trace(Step(codes[t], sources[t], states[t]), j, state)
    out[0] = j
    return out


def _step_away(i: int, fwd_ok: NDArray[np.bool_], back_ok: NDArray[np.bool_]) -> list[int]:
    """The entries a freeze, forward or backward step away from entry i."""
    out = [i]
    if i + 1 < len(fwd_ok) and fwd_ok[i + 1]:
        out.append(i + 1)
    if i > 0 and back_ok[i - 1]:
        out.append(i - 1)
    return out


def _is_step(i: int, j: int, fwd_ok: NDArray[np.bool_], back_ok: NDArray[np.bool_]) -> bool:
    """Whether going from entry i to entry j is a freeze, forward or backward step."""
    return j == i or (j == i + 1 and bool(fwd_ok[j])) or (j == i - 1 and bool(back_ok[j]))


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
