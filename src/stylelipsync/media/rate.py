"""Frame rates as exact fractions, so frame times never drift over long videos."""

from __future__ import annotations

from fractions import Fraction

# Broadcast rates that are usually written as decimals (29.97) but are really n*1000/1001.
_NTSC_RATES = (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001))


def to_rate(fps: float | Fraction | int) -> Fraction:
    """Return `fps` as an exact Fraction; 23.976/29.97/59.94 snap to the n*1000/1001 rates.

    Frame times are computed as k / rate in exact arithmetic, so a 29.97 fps clip does not accumulate
    rounding error over an hour of frames.
    """
    if isinstance(fps, Fraction):
        rate = fps
    else:
        value = float(fps)
        if not value > 0 or value != value or value == float("inf"):
            raise ValueError(f"frame rate must be a positive number, got {fps!r}")
        for ntsc in _NTSC_RATES:
            if abs(value - float(ntsc)) < 5e-3:
                return ntsc
        rate = Fraction(value).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"frame rate must be a positive number, got {fps!r}")
    return rate
