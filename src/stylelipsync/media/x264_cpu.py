"""The CPU instructions the H.264 encoder may use: those x264 detects on this machine, less AVX-512.

x264's AVX-512 MB-tree code (`mbtree_propagate_list`: by its source, eight macroblocks a step with no mask
for the last step) works past the end of a macroblock row when a picture is not a multiple of 128 pixels
wide, and past the last row that is memory the encoder never wrote, which then goes into the rate control.
On a CPU with AVX-512 the same frames then encode to different files from run to run, and differently after
whatever the process did before (measured with the x264 of PyAV 18.1: 224² frames of a real clip encoded 6
times at CRF 18 gave 5 different files, decoded pixels up to 44 levels apart; 256, 384, 512, 640 and 1280
wide were repeatable, 224, 240, 288, 320, 352, 448 and 700 were not). With the instruction sets x264
detects less AVX-512 (its AVX2 code), or without MB-tree, the output is repeatable. MB-tree is worth
keeping (without it a file of the same size loses up to 0.5 dB PSNR on the shared clips), and x264's AVX2
code gives files of the same size and quality (224²: 237.1 vs 236.8 KiB, 42.71 vs 42.73 dB; 844²: 526.6 vs
526.2 KiB, 49.27 dB both; `benchmarks/encoder_repeatability.py`).

x264 says what it detected only in its log, so a tiny encoder is opened once per process with FFmpeg's log
captured on this thread; the names it prints are its own, so the list given back never names an instruction
set the CPU lacks.
"""

from __future__ import annotations

import threading
from fractions import Fraction

import av
import av.error
import av.logging

CAPABILITIES = "using cpu capabilities:"
"""What x264 logs (at FFmpeg's INFO level) before the names of the instruction sets it uses."""
AVX512 = "AVX512"

_lock = threading.Lock()
_probed = False
_asm: str | None = None


def encoder_asm() -> str | None:
    """The value of x264's `asm` option for this machine: the instruction sets x264 detects, less AVX-512;
    None where x264 uses no AVX-512 (nothing to change) or does not say what it uses."""
    global _probed, _asm
    with _lock:
        if not _probed:
            names = detected()
            _asm = ",".join(n for n in names if n != AVX512) if AVX512 in names else None
            _probed = True
        return _asm


def detected() -> list[str]:
    """The instruction sets x264 reports using on this CPU (e.g. ["MMX2", ..., "AVX2", "AVX512"]); [] when
    it says nothing (another x264 build, no libx264)."""
    previous = av.logging.get_level()
    with av.logging.Capture(local=True) as logs:
        if previous is None or previous < av.logging.INFO:
            av.logging.set_level(av.logging.INFO)
        try:
            codec = av.CodecContext.create("libx264", "w")
            codec.width = codec.height = 64
            codec.pix_fmt = "yuv420p"
            codec.time_base = Fraction(1, 25)
            codec.thread_count = 1  # no encoder threads while FFmpeg's log goes through Python
            codec.open()
        except (av.error.FFmpegError, ValueError):
            return []
        finally:
            av.logging.set_level(previous)
    for _, name, message in logs:
        if name == "libx264" and CAPABILITIES in message:
            return message.split(CAPABILITIES, 1)[1].split()
    return []
