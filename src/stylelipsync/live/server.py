"""The live page and its WebSocket: speech in, dubbed frames out (`stylelipsync live`, docs/live.md).

Protocol on `/ws` (one session at a time; a second client gets a `busy` message and close code 1013):
- server → client, text: `{"type": "ready", "fps", "width", "height", "sample_rate", "delay_ms", "lag"}`
  once, `{"type": "done", "frames", "dropped", "fps", "latency_p50_ms", "latency_p95_ms", "recording"}` at
  the end of
  the stream, `{"type": "error", "message"}` on failure;
- client → server: binary messages of 16 kHz mono float32 little-endian samples, any length (about 20 ms is
  right), then the text `{"type": "end"}` when the speech ends (the last frames are dubbed and `done` sent);
- server → client, binary, one per frame: a 4-byte big-endian header length, a JSON header
  `{"i", "t", "speech", "latency_ms", "jpeg", "pcm"}`, the JPEG (`jpeg` bytes), then the frame's audio as
  `pcm` int16 little-endian samples at 16 kHz, so a page can play it in step with the picture. A frame
  more than `max_latency` behind its audio is sent without a picture (`jpeg` 0: keep the last one).

While the client sends nothing (a paused microphone), silence is fed at real-time pace, so the face goes
on moving with its closed mouths. Memory is bounded: a client that does not read its frames makes the
server wait (a few frames and audio chunks are buffered), and one that does not read for `SEND_TIMEOUT`
seconds is disconnected; a dropped connection ends its session and closes its recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response
from numpy.typing import NDArray

from stylelipsync.audio.mouth_shape_model import MouthShapeModel
from stylelipsync.formats import SAMPLE_RATE
from stylelipsync.live.face import LiveFace
from stylelipsync.live.session import LAG_FRAMES, AudioChunk, LiveFrame, LiveSession
from stylelipsync.media import VideoWriter

log = logging.getLogger("stylelipsync.live")

IDLE_AFTER = 0.5
"""Seconds without audio after which silence is fed, so that frames keep coming."""
IDLE_MARGIN = 0.05
"""Silence is fed up to this many seconds behind the wall clock (room for late audio)."""
CHUNK_QUEUE = 50
"""Audio messages buffered before the server stops reading the socket (about 1 s of 20 ms chunks)."""
SEND_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0
MAX_LATENCY = 0.5
JPEG_QUALITY = 80
STATIC = ("live.html", "live.js")
Send = Callable[[bytes | str], None]


@dataclass
class LiveSettings:
    """How `LiveServer` runs sessions."""

    lag: int = LAG_FRAMES
    record: Path | None = None
    jpeg_quality: int = JPEG_QUALITY
    keep_silence: bool = False
    max_latency: float | None = MAX_LATENCY
    """Frames later than this after their audio are sent without a picture (the page keeps the last one),
    so a machine too slow for the stream catches up; None: never."""
    idle_after: float = IDLE_AFTER
    """Seconds without audio after which silence is fed (the face keeps moving, mouth closed)."""
    send_timeout: float = SEND_TIMEOUT
    """Seconds a frame may wait for a client that does not read before the session is ended."""


class _ClientGoneError(Exception):
    """The client closed or stopped reading."""


class _Chunks:
    """The audio a session dubs: the client's chunks, and, once the first has come, silence at real-time
    pace while it sends none."""

    def __init__(self, idle_after: float = IDLE_AFTER) -> None:
        self.idle_after = idle_after
        self.queue: queue.Queue[AudioChunk | None] = queue.Queue(maxsize=CHUNK_QUEUE)
        self.stop = threading.Event()

    def __iter__(self) -> Iterator[AudioChunk | NDArray[np.float32]]:
        start = last = 0.0
        sent = 0
        while not self.stop.is_set():
            try:
                item = self.queue.get(timeout=0.02)
            except queue.Empty:
                now = time.perf_counter()
                if sent and now - last > self.idle_after:
                    due = int((now - start - IDLE_MARGIN) * SAMPLE_RATE) - sent
                    if due > 0:
                        sent += due
                        yield np.zeros(due, dtype=np.float32)
                continue
            if item is None:
                return
            last = time.perf_counter()
            if not sent:
                start = item.arrived - len(item.samples) / SAMPLE_RATE
            sent += len(item.samples)
            yield item


class LiveServer:
    """Serves one prepared face to one client at a time."""

    def __init__(self, face: LiveFace, settings: LiveSettings | None = None) -> None:
        self.face = face
        self.settings = settings or LiveSettings()
        self._slot = threading.Lock()
        self._sessions = 0
        self.shape_model = MouthShapeModel.default(causal=True)
        self._warm_up()

    def _warm_up(self) -> None:
        """Dub half a second of silence, so that the first client's first frames pay no first-call costs."""
        session = LiveSession(self.face, self.shape_model, lag=self.settings.lag)
        for _ in session.frames([np.zeros(SAMPLE_RATE // 2, dtype=np.float32)], jpeg_quality=50):
            pass

    def info(self) -> dict[str, object]:
        face = self.face
        delay = self.shape_model.lookahead(face.fps) + self.settings.lag / face.fps
        return {
            "video": face.video.name,
            "fps": face.fps,
            "width": face.width,
            "height": face.height,
            "sample_rate": SAMPLE_RATE,
            "delay_ms": round(delay * 1000.0, 1),
            "lag": self.settings.lag,
            "bank_entries": len(face.bank),
            "prepare_seconds": round(face.prepare_seconds, 2),
        }

    def app(self) -> FastAPI:
        """The FastAPI app: `/` (page), `/static/*`, `/info`, `/ws`."""
        app = FastAPI(title="stylelipsync live", docs_url=None, redoc_url=None)

        @app.get("/", response_class=HTMLResponse)
        def page() -> HTMLResponse:
            return HTMLResponse(_static("live.html"))

        @app.get("/static/{name}")
        def static(name: str) -> Response:
            if name not in STATIC:
                return Response(status_code=404)
            kind = "text/javascript" if name.endswith(".js") else "text/html"
            return Response(_static(name), media_type=kind)

        @app.get("/info")
        def info() -> JSONResponse:
            return JSONResponse(self.info())

        @app.websocket("/ws")
        async def ws(socket: WebSocket) -> None:
            await socket.accept()
            if not self._slot.acquire(blocking=False):
                await socket.send_json(
                    {"type": "busy", "message": "another live session is running; try again when it ends"}
                )
                await socket.close(code=1013, reason="busy")
                return
            try:
                await self._session(socket)
            finally:
                self._slot.release()
            # The session is over and the next client may start. A client that stopped reading cannot
            # take the close frame either: give up on it after a moment (uvicorn's keep-alive pings then
            # drop the connection).
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, TimeoutError):
                await asyncio.wait_for(socket.close(), CLOSE_TIMEOUT)

        return app

    async def _session(self, socket: WebSocket) -> None:
        loop = asyncio.get_running_loop()
        session = LiveSession(
            self.face, self.shape_model, lag=self.settings.lag, keep_silence=self.settings.keep_silence
        )
        chunks = _Chunks(self.settings.idle_after)
        self._sessions += 1
        record = self._record_path()
        await socket.send_json({"type": "ready", **self.info()})
        done = asyncio.Event()
        result: dict[str, object] = {}

        def send(message: bytes | str) -> None:
            coro = socket.send_bytes(message) if isinstance(message, bytes) else socket.send_text(message)
            try:
                asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=self.settings.send_timeout)
            except Exception as exc:
                raise _ClientGoneError(str(exc)) from exc

        def emit() -> None:
            try:
                result.update(self._emit(session, chunks, send, record))
                send(json.dumps({"type": "done", **result}))
            except _ClientGoneError:
                pass
            except Exception as exc:
                log.exception("live session failed")
                with contextlib.suppress(_ClientGoneError):
                    send(json.dumps({"type": "error", "message": str(exc)}))
            finally:
                chunks.stop.set()
                loop.call_soon_threadsafe(done.set)

        emitter = threading.Thread(target=emit, name="stylelipsync-live-emit", daemon=True)
        emitter.start()
        receiver = asyncio.create_task(self._receive(socket, chunks))
        await done.wait()
        receiver.cancel()
        await asyncio.to_thread(emitter.join)

    async def _receive(self, socket: WebSocket, chunks: _Chunks) -> None:
        """Client messages → audio chunks (waits while the chunk queue is full: backpressure)."""
        try:
            while not chunks.stop.is_set():
                message = await socket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                if data is not None:
                    if len(data) % 4:
                        data = data[: len(data) - len(data) % 4]
                    samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
                    samples = np.nan_to_num(np.clip(samples, -1.0, 1.0))
                    chunk = AudioChunk(samples, time.perf_counter())
                    while not chunks.stop.is_set():
                        try:
                            chunks.queue.put_nowait(chunk)
                            break
                        except queue.Full:
                            await asyncio.sleep(0.01)
                    continue
                text = message.get("text") or ""
                try:
                    kind = json.loads(text).get("type")
                except (json.JSONDecodeError, AttributeError):
                    kind = None
                if kind == "end":
                    await asyncio.to_thread(chunks.queue.put, None)
                    return
        except WebSocketDisconnect:
            pass
        chunks.stop.set()

    def _emit(
        self, session: LiveSession, chunks: _Chunks, send: Send, record: Path | None
    ) -> dict[str, object]:
        """Dub the stream and send every frame; returns the session's summary."""
        latencies: list[float] = []
        frames = dropped = 0
        first = 0.0
        writer = None
        if record is not None:
            face = self.face
            writer = VideoWriter(
                record, face.fps, face.width, face.height, audio=np.zeros(0), preset="veryfast"
            )
        stream = session.frames(
            chunks, jpeg_quality=self.settings.jpeg_quality, max_latency=self.settings.max_latency
        )
        try:
            for frame in stream:
                latency = time.perf_counter() - frame.arrived
                send(_message(frame, latency))
                if writer is not None:
                    writer.append_audio(frame.audio)
                    writer.write(frame.image)
                if frames == 0:
                    first = time.perf_counter()
                frames += 1
                dropped += frame.dropped
                latencies.append(latency)
        except BaseException:
            stream.close()
            if writer is not None and writer.frames_written:
                writer.close()
            elif writer is not None:
                writer.abort()
            raise
        saved = writer.close() if writer is not None and writer.frames_written else None
        elapsed = time.perf_counter() - first if frames > 1 else 0.0
        lat = np.asarray(latencies) * 1000.0
        return {
            "frames": frames,
            "dropped": dropped,
            "fps": round((frames - 1) / elapsed, 2) if elapsed > 0 else 0.0,
            "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if frames else 0.0,
            "latency_p95_ms": round(float(np.percentile(lat, 95)), 1) if frames else 0.0,
            "recording": str(saved) if saved else None,
        }

    def _record_path(self) -> Path | None:
        """The recording of this session: `--record` for the first, then name-2.mp4, name-3.mp4, …"""
        path = self.settings.record
        if path is None or self._sessions == 1:
            return path
        return path.with_name(f"{path.stem}-{self._sessions}{path.suffix}")


def _message(frame: LiveFrame, latency: float) -> bytes:
    """One frame's binary message (module docstring)."""
    jpeg = frame.jpeg or b""
    pcm = (np.clip(frame.audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    header = json.dumps(
        {
            "i": frame.index,
            "t": round(frame.time, 4),
            "speech": round(frame.speech, 3),
            "latency_ms": round(latency * 1000.0, 1),
            "jpeg": len(jpeg),
            "pcm": len(frame.audio),
        }
    ).encode()
    return struct.pack(">I", len(header)) + header + jpeg + pcm


def _static(name: str) -> str:
    return (resources.files("stylelipsync") / "live" / "static" / name).read_text(encoding="utf-8")


__all__ = ["LiveServer", "LiveSettings"]
