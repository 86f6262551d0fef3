"""`stylelipsync live`: dub a face from streaming speech in real time, on a CPU (mouth-bank engine).

`LiveFace.prepare` tracks the person once; a `LiveSession` turns audio chunks into frames
(`session.frames(chunks)` is the generator for embedding); `live.server` serves a page and a WebSocket.
"""

from stylelipsync.live.face import LiveFace
from stylelipsync.live.session import LAG_FRAMES, AudioChunk, FramePlan, LiveFrame, LiveSession

__all__ = ["LAG_FRAMES", "AudioChunk", "FramePlan", "LiveFace", "LiveFrame", "LiveSession"]
