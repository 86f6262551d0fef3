"""A WebSocket client for `stylelipsync live`: stream speech at real-time pace, collect the dubbed frames.

For scripts, tests and benchmarks (the page is the interactive client). Latency is measured end to end on
the client's clock: from sending the chunk that completes a frame's audio to receiving that frame.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from dataclasses import dataclass, field

import numpy as np
import websockets
from numpy.typing import NDArray

from stylelipsync.errors import StyleLipSyncError
from stylelipsync.formats import SAMPLE_RATE


@dataclass
class ReceivedFrame:
    """One frame as the client got it."""

    index: int
    received: float
    """`time.perf_counter()` on arrival."""
    header: dict[str, float]
    jpeg: bytes
    pcm: NDArray[np.int16]


@dataclass
class StreamResult:
    """Everything a streamed session returned."""

    ready: dict[str, object]
    frames: list[ReceivedFrame] = field(default_factory=list)
    done: dict[str, object] = field(default_factory=dict)
    sent: list[tuple[int, float]] = field(default_factory=list)
    """(samples sent so far, `time.perf_counter()`) after each chunk."""

    def latencies(self) -> NDArray[np.float64]:
        """(frames,) seconds from sending the chunk that completed each frame's audio to receiving it."""
        fps = float(self.ready["fps"])  # type: ignore[arg-type]
        ends = np.asarray([s for s, _ in self.sent])
        times = np.asarray([t for _, t in self.sent])
        out = []
        for f in self.frames:
            need = round((f.index + 1) * SAMPLE_RATE / fps)
            k = min(int(np.searchsorted(ends, need)), len(ends) - 1)
            out.append(f.received - times[k])
        return np.asarray(out)

    def fps(self) -> float:
        """Frames per second received, first to last frame."""
        if len(self.frames) < 2:
            return 0.0
        return (len(self.frames) - 1) / (self.frames[-1].received - self.frames[0].received)


def parse_frame(data: bytes) -> tuple[dict[str, float], bytes, NDArray[np.int16]]:
    """Header, JPEG and int16 audio of one frame message (`live.server` docstring)."""
    (size,) = struct.unpack(">I", data[:4])
    header = json.loads(data[4 : 4 + size])
    jpeg_end = 4 + size + int(header["jpeg"])
    pcm = np.frombuffer(data[jpeg_end:], dtype="<i2")
    return header, data[4 + size : jpeg_end], pcm


async def stream_async(
    url: str, wave: NDArray[np.floating], *, chunk_ms: float = 20.0, realtime: bool = True
) -> StreamResult:
    """Send 16 kHz mono `wave` to a live server's /ws (at real-time pace unless `realtime` is False), then
    `end`; return what came back once the server says `done`."""
    x = np.asarray(wave, dtype="<f4").reshape(-1)
    chunk = max(1, round(chunk_ms * SAMPLE_RATE / 1000.0))
    async with websockets.connect(url, max_size=None) as ws:
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            raise StyleLipSyncError(
                f"{url}: the live server refused the session: {ready.get('message', ready)}"
            )
        result = StreamResult(ready=ready)

        async def send() -> None:
            start = time.perf_counter()
            for i in range(0, len(x), chunk):
                end = min(i + chunk, len(x))
                if realtime:
                    await asyncio.sleep(max(0.0, start + end / SAMPLE_RATE - time.perf_counter()))
                await ws.send(x[i:end].tobytes())
                result.sent.append((end, time.perf_counter()))
            await ws.send(json.dumps({"type": "end"}))

        sender = asyncio.create_task(send())
        async for message in ws:
            if isinstance(message, bytes):
                header, jpeg, pcm = parse_frame(message)
                result.frames.append(ReceivedFrame(int(header["i"]), time.perf_counter(), header, jpeg, pcm))
                continue
            msg = json.loads(message)
            if msg.get("type") == "error":
                raise StyleLipSyncError(f"{url}: the live session failed: {msg.get('message')}")
            if msg.get("type") == "done":
                result.done = msg
                break
        await sender
        return result


def stream(url: str, wave: NDArray[np.floating], **kwargs: float | bool) -> StreamResult:
    """Blocking `stream_async`."""
    return asyncio.run(stream_async(url, wave, **kwargs))  # type: ignore[arg-type]


__all__ = ["ReceivedFrame", "StreamResult", "parse_frame", "stream", "stream_async"]
