"""How the generator runs at inference: numeric precision (autocast) and optional ``torch.compile``.

``InferenceRunner`` wraps a loaded ``StyleLipSync`` with the stages the dubbing pipeline calls. The heavy
stages (face encoder, decoder) run under autocast at the chosen precision; the audio encoder, the reference
encoder and MaLS stay in float32 (they cost ~1 % of the work and the styles they produce steer the whole
face). ``compile=True`` wraps the heavy stages in ``torch.compile``; if compiling fails (no C++ compiler,
an unsupported operator, ...) the runner warns once and carries on in eager mode with the same numbers.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch

from ..errors import StyleLipSyncError
from .stylelipsync import StyleLipSync

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True when oneDNN has bf16 kernels for this CPU (AVX512-BF16, AMX or AVX512 emulation).

    Without them (e.g. AVX2-only CPUs) PyTorch falls back to scalar bf16 loops that are ~100× slower
    than float32.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None = float32); user errors name the fix."""
    if precision not in _DTYPES:
        raise StyleLipSyncError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    dtype = _DTYPES[precision]
    if dtype is torch.float16 and device.type != "cuda":
        raise StyleLipSyncError(
            "--precision fp16 needs a CUDA GPU (CPU autocast supports bf16 only); "
            "use --precision bf16 or fp32"
        )
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise StyleLipSyncError("this GPU has no bf16 support; use --precision fp16 or fp32")
    if dtype is torch.bfloat16 and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            "this CPU has no native bf16 support (no AVX512/AMX bf16 kernels): bf16 runs far slower than "
            "fp32 here; use --precision fp32",
            RuntimeWarning,
            stacklevel=2,
        )
    return dtype


class CompiledStage:
    """A callable that runs ``torch.compile(fn)`` and falls back to ``fn`` for good on the first failure.

    Compilation happens lazily at the first call (and again for new input shapes), so failures surface
    there; the eager function then reruns the call, which raises again if the error was in the inputs.
    """

    def __init__(self, fn: Callable[..., Any], name: str, backend: str = "inductor") -> None:
        self.fn, self.name = fn, name
        self.compiled: Callable[..., Any] | None
        try:
            self.compiled = torch.compile(fn, backend=backend, dynamic=False)
        except Exception as exc:  # torch.compile itself may refuse (e.g. unsupported Python)
            self._give_up(exc)

    def _give_up(self, exc: BaseException) -> None:
        self.compiled = None
        reason = (str(exc).splitlines() or [""])[0][:200]
        warnings.warn(
            f"torch.compile of the {self.name} failed ({type(exc).__name__}: {reason}); "
            "running it without compiling (same results, eager speed)",
            RuntimeWarning,
            stacklevel=3,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:
                self._give_up(exc)
        return self.fn(*args, **kwargs)


class InferenceRunner:
    """The generator's inference stages at a precision, optionally compiled (see the module doc).

    ``compile`` is False, True (inductor) or a ``torch.compile`` backend name (``"eager"`` traces with
    TorchDynamo only: a cheap check that the graph capture works).
    """

    def __init__(
        self,
        model: StyleLipSync,
        device: torch.device,
        precision: str = "fp32",
        compile: bool | str = False,
    ) -> None:
        self.model, self.device, self.precision = model, device, precision
        self.dtype = autocast_dtype(precision, device)
        self._face: Callable[[torch.Tensor], list[torch.Tensor]] = model.face_features
        self._decode: Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor] = model.decode
        if compile:
            backend = compile if isinstance(compile, str) else "inductor"
            self._face = CompiledStage(model.face_features, "face encoder", backend)
            self._decode = CompiledStage(model.decode, "decoder", backend)

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
        else:
            with torch.autocast(self.device.type, dtype=self.dtype):
                yield

    def reference_styles(self, ref: torch.Tensor) -> torch.Tensor:
        """E_ref in float32: [N, 3, R, R] → [N, num_ws, D]."""
        return self.model.reference_styles(ref)

    def audio_styles(self, mel: torch.Tensor) -> torch.Tensor:
        """E_aud in float32: [N, 20, 80] → [N, num_ws, D]."""
        return self.model.audio_styles(mel)

    def face_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """E_face at the runner's precision (features stay in that dtype, halving their memory)."""
        with self._autocast():
            return self._face(x)

    def decode(self, styles: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """Decoder at the runner's precision → x̂ [N, 3, R, R] in float32."""
        with self._autocast():
            return self._decode(styles, features).float()
