"""Exact streaming of MaLS: final styles for a long sequence, computed chunk by chunk with bounded memory.

MaLS (moving average, then two kernel-3 convolutions) lets frame t see frames t-3 … t+3. Running it on a
window that extends `REACH` frames past the frames we keep gives exactly the whole-sequence result; only the
true ends of the sequence see MaLS's own padding, as in a whole-sequence pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

REACH = 3
"""Temporal reach of MaLS in frames on each side (average ±1, each conv ±1)."""

MixFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps per-frame audio styles (T, n_styles, D) with T >= 2 to final styles of the same shape."""


class StreamingStyleMixer:
    """Accepts per-frame audio styles in order and returns final styles as soon as they are exact.

    `push` returns the styles of the frames that became complete (possibly none); after the last frame of
    the sequence (`total`) has been pushed, every remaining frame is returned. Memory holds at most the
    pushed-but-unreturned frames plus 2·REACH frames of context.
    """

    def __init__(self, mix: MixFn, total: int, reach: int = REACH) -> None:
        if total < 1:
            raise ValueError(f"total must be >= 1 frame, got {total}")
        self._mix = mix
        self.total = total
        self.reach = reach
        self._buffer: list[torch.Tensor] = []
        self._buffer_start = 0
        self._received = 0
        self.emitted = 0

    def push(self, audio_styles: torch.Tensor) -> torch.Tensor:
        """Add the audio styles (n, n_styles, D) of the next n frames; return the newly exact final styles."""
        if self._received + audio_styles.shape[0] > self.total:
            raise ValueError(
                f"pushed {self._received + audio_styles.shape[0]} frames into a sequence of {self.total}"
            )
        self._buffer.extend(audio_styles.unbind(0))
        self._received += audio_styles.shape[0]
        done = self._received == self.total
        ready_end = self.total if done else max(self._received - self.reach, self.emitted)
        if ready_end <= self.emitted:
            return audio_styles.new_empty((0, *audio_styles.shape[1:]))
        lo = max(0, self.emitted - self.reach)
        hi = min(self.total, ready_end + self.reach)
        window = torch.stack(self._buffer[lo - self._buffer_start : hi - self._buffer_start])
        if window.shape[0] == 1:
            styles = self._mix(window.expand(2, *window.shape[1:]))[:1]
        else:
            styles = self._mix(window)
        out = styles[self.emitted - lo : ready_end - lo]
        self.emitted = ready_end
        keep_from = max(0, self.emitted - self.reach)
        del self._buffer[: keep_from - self._buffer_start]
        self._buffer_start = keep_from
        return out
