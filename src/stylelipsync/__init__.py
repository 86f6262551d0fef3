"""stylelipsync: dub a talking-face video to new speech (StyleLipSync, Ki & Min, ICCV 2023)."""

import os as _os
import sys as _sys

__version__ = "0.1.0"


def _prefer_passive_openmp() -> None:
    """Make idle OpenMP threads sleep instead of spin, for every use of the package (CLI and Python API).

    OpenMP reads OMP_WAIT_POLICY once, when PyTorch is loaded, so this must run before `import torch`; an
    explicit OMP_WAIT_POLICY wins. On a CPU shared with other jobs, spinning threads starve each other: the
    inference kernels (many short parallel regions) took 2.0 CPU-s per frame of the paper config with the
    default policy against 0.8 with passive threads on 2 busy cores, and fell to the speed of the reference
    operators (benchmarks/RESULTS.md, issue #24); a small model ran at 1.0 s/frame against 0.04.
    """
    if "torch" not in _sys.modules:
        _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


_prefer_passive_openmp()
