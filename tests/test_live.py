"""Live dubbing: streaming audio features, online selection, the session and the WebSocket server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stylelipsync.audio.mouth_shape_model import MouthShapeModel
from stylelipsync.audio.mouth_shape_stream import MouthShapeStream
from stylelipsync.audio.vad import StreamingVoiceActivity, voice_activity
from stylelipsync.errors import StyleLipSyncError
from stylelipsync.media import VideoWriter, load_audio, probe
from stylelipsync.pipelines.engines.bank.online import OnlineSelector
from stylelipsync.pipelines.engines.bank.select import SelectionCosts, cuts, select, unary_costs

FACE = "pcavs_Audio_Source_00086.mp4"
"""A short 224² talking clip: the face the session tests dub (small, so they keep real time under load)."""
SPEECH = "sls_RoyBlunt_0_10s.wav"


def _chunks(wave: np.ndarray, rng: np.random.Generator, most: int = 900) -> Iterator[np.ndarray]:
    i = 0
    while i < len(wave):
        n = int(rng.integers(1, most))
        yield wave[i : i + n]
        i += n


def test_streamed_mouth_shapes_equal_the_whole_clip_prediction(media_dir: Path) -> None:
    wave = load_audio(media_dir / SPEECH, 16000)[: 16000 * 4]
    model = MouthShapeModel.default(causal=True)
    frames = 100
    whole = model.predict(wave, 16000, frames, 25.0)
    stream = MouthShapeStream(model, 25.0)
    parts = [stream.push(c) for c in _chunks(wave, np.random.default_rng(0))]
    online = np.concatenate(parts)
    # Every frame whose look-ahead has arrived is out, and no other.
    ready = int((len(wave) / 16000 - model.lookahead(25.0)) * 25.0)
    assert abs(len(online) - ready) <= 1
    np.testing.assert_allclose(online, whole[: len(online)], atol=1e-9)
    rest = stream.finish()
    assert len(online) + len(rest) >= frames


def test_stream_refuses_a_whole_clip_model() -> None:
    with pytest.raises(ValueError, match="causal=True"):
        MouthShapeStream(MouthShapeModel.default(), 25.0)


def _synthetic_bank(seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    n, t_len = 300, 200
    z = np.cumsum(rng.normal(size=(n, 6)) * 0.3, axis=0)
    pose = rng.normal(size=(n, 3)) * 3.0
    follows = np.ones(n, dtype=bool)
    follows[::60] = False
    target = z[rng.integers(0, n, t_len)] + rng.normal(size=(t_len, 6)) * 0.3
    speech = rng.random(t_len)
    return z, pose, follows, target, np.zeros((t_len, 3)), speech


def _path_cost(chosen: np.ndarray, bank: tuple[np.ndarray, ...], costs: SelectionCosts) -> float:
    z, pose, follows, target, tpose, speech = bank
    total = sum(
        float(unary_costs(target[t], tpose[t], z, pose, costs)[chosen[t]]) for t in range(len(chosen))
    )
    direction = 0  # +1 playing forward, -1 backward, 0 none yet (start, after a jump)
    for t in range(1, len(chosen)):
        a, b = chosen[t - 1], chosen[t]
        if b == a + 1 and follows[b]:
            total += costs.forward + (costs.turn if direction == -1 else 0.0)
            direction = 1
        elif b == a - 1 and follows[a]:
            total += costs.backward + (costs.turn if direction == 1 else 0.0)
            direction = -1
        elif a == b:
            total += costs.freeze * speech[t]
        else:
            total += costs.jump
            direction = 0
    return total


def _online(bank: tuple[np.ndarray, ...], lag: int) -> np.ndarray:
    z, pose, follows, target, tpose, speech = bank
    selector = OnlineSelector(z, pose, follows, lag=lag)
    out: list[int] = []
    for t in range(len(target)):
        new = selector.push(target[t], tpose[t], speech[t])
        assert len(new) == (1 if t >= lag else 0)
        out += new
    out += selector.flush()
    return np.asarray(out)


def test_online_selection_with_the_whole_clip_as_lag_is_the_offline_selection() -> None:
    bank = _synthetic_bank(1)
    z, pose, follows, target, tpose, speech = bank
    offline = select(target, tpose, z, pose, follows, SelectionCosts(), speech)
    np.testing.assert_array_equal(_online(bank, len(target)), offline)


def test_online_selection_with_a_short_lag_stays_close_to_the_optimum() -> None:
    costs = SelectionCosts()
    for seed in (2, 3):
        bank = _synthetic_bank(seed)
        z, pose, follows, target, tpose, speech = bank
        offline = select(target, tpose, z, pose, follows, costs, speech)
        best = _path_cost(offline, bank, costs)
        greedy = _path_cost(_online(bank, 0), bank, costs)
        lag2 = _online(bank, 2)
        assert len(lag2) == len(target)
        # A lag of 2 frames recovers most of what deciding on the spot loses.
        assert _path_cost(lag2, bank, costs) <= best * 1.02 < greedy
        assert cuts(lag2, follows).sum() <= cuts(offline, follows).sum() * 1.1 + 2


def test_streaming_voice_activity_follows_the_whole_clip_decision(media_dir: Path) -> None:
    wave = load_audio(media_dir / SPEECH, 16000)
    quiet = np.zeros(16000, dtype=np.float32)
    wave = np.concatenate([quiet, wave[: 16000 * 6], quiet, wave[16000 * 6 :]])
    frames = int(len(wave) / 16000 * 25)
    whole = voice_activity(wave, 16000, frames, 25.0)
    vad = StreamingVoiceActivity(25.0)
    online = np.concatenate([vad.push(c) for c in _chunks(wave, np.random.default_rng(4))])[:frames]
    assert len(online) >= frames - 1
    agree = (online == whole[: len(online)]).mean()
    assert agree > 0.85, agree
    assert not online[:20].any()  # the leading second of silence
    assert online[30:60].mean() > 0.8


def test_video_writer_takes_audio_as_it_arrives(tmp_path: Path) -> None:
    out = tmp_path / "live.mp4"
    rng = np.random.default_rng(5)
    with VideoWriter(out, 25, 64, 48, audio=np.zeros(0)) as writer:
        for _ in range(50):
            writer.append_audio(rng.uniform(-0.5, 0.5, 640).astype(np.float32))
            writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    info = probe(out)
    assert info.has_audio and abs(info.duration - 2.0) < 0.1
    audio = load_audio(out, 16000)
    assert abs(len(audio) / 16000 - 2.0) < 0.1 and np.abs(audio).mean() > 0.1


# -- sessions and the server (real face, real speech) ------------------------------------------------


@pytest.fixture(scope="module")
def live_face(media_dir: Path) -> Iterator[object]:
    from stylelipsync.live import LiveFace

    face = LiveFace.prepare(media_dir / FACE)
    yield face
    face.close()


def _speech_with_pause(media_dir: Path) -> np.ndarray:
    """2.4 s of speech, 1.6 s of silence, 2.4 s of speech (another person's voice)."""
    wave = load_audio(media_dir / SPEECH, 16000)
    pause = np.zeros(int(1.6 * 16000), dtype=np.float32)
    return np.concatenate([wave[16000 : 16000 * 34 // 10], pause, wave[16000 * 5 : 16000 * 74 // 10]])


def _mouth_openings(images: list[np.ndarray], fps: float) -> np.ndarray:
    """Inner-lip opening (model cm) of each frame, by FaceMesh."""
    from stylelipsync.face.geometry import FaceModel
    from stylelipsync.face.mouth_shape import mouth_shapes
    from stylelipsync.face.track import track_face

    track = track_face(iter(images), fps=fps)
    model = FaceModel.from_landmarks(track.landmarks, track.valid)
    return np.asarray(mouth_shapes(track.observed(), model, track.valid).opening)


def test_a_session_dubs_every_frame_in_order_and_closes_the_mouth_in_the_pause(
    live_face: object, media_dir: Path
) -> None:
    from stylelipsync.live import LiveSession

    wave = _speech_with_pause(media_dir)
    session = LiveSession(live_face)  # type: ignore[arg-type]
    frames = list(session.frames(_chunks(wave, np.random.default_rng(6), 700)))
    expected = int(np.ceil(len(wave) / 16000 * 25))
    assert [f.index for f in frames] == list(range(len(frames)))
    assert expected <= len(frames) <= expected + 6
    audio = np.concatenate([f.audio for f in frames])
    np.testing.assert_array_equal(audio[: len(wave)], wave)  # every frame carries its own audio
    assert session.delay < 0.2
    opening = _mouth_openings([f.image for f in frames], 25.0)
    t = np.arange(len(frames)) / 25.0
    speech = ((t > 0.3) & (t < 2.3)) | ((t > 4.3) & (t < 6.3))
    pause = (t > 2.9) & (t < 3.8)
    assert np.nanmean(opening[pause]) < 0.2 < np.nanmean(opening[speech]) - 0.1
    assert np.nanstd(opening[speech]) > 0.15  # the mouth moves with the speech, not held open
    assert not any(f.dropped for f in frames)


def test_a_session_too_far_behind_its_audio_sends_frames_unpainted(
    live_face: object, media_dir: Path
) -> None:
    from stylelipsync.live import LiveSession

    wave = _speech_with_pause(media_dir)[: 16000 * 2]
    session = LiveSession(live_face)  # type: ignore[arg-type]
    frames = list(session.frames(_chunks(wave, np.random.default_rng(7), 700), max_latency=0.0))
    assert len(frames) >= 50 and all(f.dropped and f.jpeg is None for f in frames)
    # The picture holds (here: the first source frame, as nothing was painted) while the audio goes on.
    np.testing.assert_array_equal(frames[-1].image, live_face.frame(0))  # type: ignore[attr-defined]
    np.testing.assert_array_equal(np.concatenate([f.audio for f in frames])[: len(wave)], wave)


class _Server:
    """A `LiveServer` on a free loopback port, run by uvicorn on a thread."""

    def __init__(self, face: object, settings: object) -> None:
        import uvicorn

        from stylelipsync.live.server import LiveServer

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.live = LiveServer(face, settings)  # type: ignore[arg-type]
        # No keep-alive pings: a stalled client must be dropped by the session's own send timeout.
        config = uvicorn.Config(
            self.live.app(), host="127.0.0.1", port=self.port, log_level="warning", ws_ping_interval=None
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the live server did not start"
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def live_server(live_face: object, tmp_path: Path) -> Iterator[_Server]:
    from stylelipsync.live.server import LiveSettings

    # No idle filling: on a loaded machine a late chunk would otherwise add frames of silence.
    settings = LiveSettings(record=tmp_path / "rec.mp4", send_timeout=2.0, idle_after=30.0, jpeg_quality=100)
    server = _Server(live_face, settings)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live_command(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The real `stylelipsync live` command in its own process (as a user runs it), recording."""
    import subprocess
    import sys

    record = tmp_path_factory.mktemp("live_cmd") / "rec.mp4"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = Path(sys.executable).parent / "stylelipsync"
    cmd = [str(cli), "live", "--video", str(media_dir / FACE), "--port", str(port), "--record", str(record)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "stylelipsync live did not start in 120 s"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.3)
    yield f"ws://127.0.0.1:{port}/ws", record
    proc.terminate()
    proc.wait(timeout=60)


def test_streaming_speech_through_the_websocket_at_real_time_pace(
    live_command: tuple[str, Path], media_dir: Path
) -> None:
    """The CI check of `stylelipsync live`: real time, bounded latency, a recording of the right length
    whose mouth moves with the speech."""
    from stylelipsync.live.client import stream

    url, record = live_command
    wave = _speech_with_pause(media_dir)
    result = stream(url, wave)
    fps = float(result.ready["fps"])
    expected = int(np.ceil(len(wave) / 16000 * fps))
    assert expected <= len(result.frames) <= expected + 6
    assert [f.index for f in result.frames] == list(range(len(result.frames)))
    # Frames leave at the input's rate (paced by the speech arriving in real time; the last few, whose
    # look-ahead is the end of the stream, come at once) ...
    steady = [f.received for f in result.frames[5:-10]]
    assert (len(steady) - 1) / (steady[-1] - steady[0]) == pytest.approx(fps, rel=0.1)
    # ... each within the look-ahead + selection delay + painting of its audio.
    delay = float(result.ready["delay_ms"]) / 1000.0
    latency = result.latencies()
    assert np.percentile(latency, 95) < delay + 0.3, np.percentile(latency, 95)
    assert result.done["frames"] == len(result.frames)
    pcm = np.concatenate([f.pcm for f in result.frames]).astype(np.float32) / 32767.0
    assert np.abs(pcm[: len(wave)] - wave).max() < 1e-3  # each frame carries its own audio back
    recording = Path(str(result.done["recording"]))
    assert recording == record
    info = probe(recording)
    assert info.has_audio and info.n_frames == len(result.frames)
    assert abs(info.duration - len(result.frames) / fps) < 0.1
    recorded_audio = load_audio(recording, 16000)
    assert abs(len(recorded_audio) - len(result.frames) * 16000 / fps) < 0.05 * 16000
    from stylelipsync.media import VideoReader

    with VideoReader(recording) as reader:
        images = [f.image for f in reader]
    opening = _mouth_openings(images, fps)
    t = np.arange(len(images)) / fps
    speech = ((t > 0.3) & (t < 2.3)) | ((t > 4.3) & (t < 6.3))
    pause = (t > 2.9) & (t < 3.8)
    assert np.nanmean(opening[pause]) < 0.2 < np.nanmean(opening[speech]) - 0.1
    assert np.nanstd(opening[speech]) > 0.15


def test_a_second_client_is_told_the_server_is_busy(live_server: _Server, media_dir: Path) -> None:
    import websockets

    from stylelipsync.live.client import stream_async

    wave = load_audio(media_dir / SPEECH, 16000)[: 16000 * 2]

    async def both() -> tuple[object, dict[str, object], int | None]:
        first = asyncio.create_task(stream_async(live_server.url, wave))
        await asyncio.sleep(0.5)
        async with websockets.connect(live_server.url) as ws:
            busy = json.loads(await ws.recv())
            await ws.wait_closed()
            code = ws.close_code
        return await first, busy, code

    first, busy, code = asyncio.run(both())
    assert busy["type"] == "busy" and "another live session" in str(busy["message"])
    assert code == 1013
    assert len(first.frames) >= 50  # type: ignore[attr-defined]


def test_a_dropped_or_stalled_client_ends_its_session_and_frees_the_server(
    live_server: _Server, media_dir: Path, tmp_path: Path
) -> None:
    import websockets

    from stylelipsync.live.client import stream_async

    wave = load_audio(media_dir / SPEECH, 16000)

    async def drop() -> None:
        async with websockets.connect(live_server.url) as ws:
            await ws.recv()
            for i in range(0, 16000, 320):
                await ws.send(wave[i : i + 320].tobytes())
            await asyncio.sleep(0.3)
        # closed without "end"

    async def served_after_a_stall() -> tuple[float, int]:
        """One client sends speech and never reads a frame, and stays connected; another then asks for
        a session until it gets one. Returns how long that took and how many frames the second got."""
        deadline = time.monotonic() + 60
        while True:  # the dropped client's session may take a moment to end
            # A small receive buffer, so that a few unread frames are enough to make the server wait.
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", live_server.port))
            stalled = await websockets.connect(live_server.url, sock=sock, max_queue=2, ping_interval=None)
            if json.loads(await stalled.recv())["type"] == "ready":
                break
            await stalled.close()
            assert time.monotonic() < deadline, "the dropped client's session never ended"
            await asyncio.sleep(0.5)
        try:
            start = time.monotonic()
            try:
                for i in range(0, len(wave), 320):
                    await asyncio.wait_for(stalled.send(wave[i : i + 320].tobytes()), 1.0)
            except TimeoutError:
                pass  # the server stopped reading it: its frames cannot leave
            while True:
                try:
                    result = await stream_async(live_server.url, wave[: 16000 * 2])
                    return time.monotonic() - start, len(result.frames)
                except StyleLipSyncError as exc:
                    assert "another live session" in str(exc) and time.monotonic() - start < 100
                    await asyncio.sleep(0.5)
        finally:
            stalled.transport.abort()

    asyncio.run(drop())
    waited, frames = asyncio.run(asyncio.wait_for(served_after_a_stall(), 180))
    # Freed by the session's send timeout (2 s here) once the socket buffers are full, not by the stalled
    # client going away: about 5 s on a quiet machine, up to 50 s seen on a heavily loaded one (a few MB
    # of frames must be painted first); with no send timeout it is never freed.
    assert waited < 100 and frames >= 50, (waited, frames)
    # Every session's recording was closed as a playable file, also the dropped and the stalled one's.
    for name in ("rec.mp4", "rec-2.mp4", "rec-3.mp4"):
        assert probe(tmp_path / name).n_frames > 0, name


def test_the_face_keeps_moving_with_a_closed_mouth_while_no_audio_comes(
    live_face: object, media_dir: Path
) -> None:
    import websockets

    from stylelipsync.live.client import parse_frame
    from stylelipsync.live.server import LiveSettings

    server = _Server(live_face, LiveSettings(idle_after=0.3))
    wave = load_audio(media_dir / SPEECH, 16000)[16000 : 16000 * 2]

    async def pause() -> list[dict[str, float]]:
        headers = []
        async with websockets.connect(server.url) as ws:
            await ws.recv()
            for i in range(0, len(wave), 320):
                await ws.send(wave[i : i + 320].tobytes())
                await asyncio.sleep(0.02)
            deadline = time.monotonic() + 2.5  # then silence: the microphone muted
            while time.monotonic() < deadline:
                message = await asyncio.wait_for(ws.recv(), 5)
                if isinstance(message, bytes):
                    headers.append(parse_frame(message)[0])
        return headers

    try:
        headers = asyncio.run(pause())
    finally:
        server.stop()
    assert len(headers) >= 0.7 * 3.5 * 25  # frames kept coming through the pause
    assert [h["i"] for h in headers] == list(range(len(headers)))
    assert max(h["speech"] for h in headers[-20:]) == 0.0  # ... with the mouth at rest


def test_the_live_page_in_a_browser_dubs_the_microphone_and_a_file(
    live_command: tuple[str, Path], media_dir: Path, tmp_path: Path
) -> None:
    """Headless Chromium with a fake microphone playing a speech file: the page receives and draws
    frames; then a file streamed from the page's file picker. STYLELIPSYNC_SCREENSHOT=<png> saves the page
    (docs/images/live_page.png in the README is made that way)."""
    import os

    from scipy.io import wavfile

    from browser import launch, playwright_driver

    url = live_command[0].replace("ws://", "http://").removesuffix("/ws") + "/"
    speech = tmp_path / "speech.wav"
    wave = load_audio(media_dir / SPEECH, 16000)[: 16000 * 6]
    wavfile.write(speech, 16000, (wave * 32767).astype(np.int16))
    fake_mic = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={speech}",
    ]
    frames_at_least = """(n) => Number(document.body.dataset.frames || 0) >= n"""
    drawn = """() => { const c = document.getElementById("stage");
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
        return s / (d.length / 4); }"""
    with playwright_driver() as playwright:
        browser = launch(playwright, fake_mic)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            page.wait_for_function("() => !document.getElementById('mic').disabled", timeout=30000)
            assert FACE in page.inner_text("#about")
            page.click("#mic")
            page.wait_for_function(frames_at_least, arg=50, timeout=60000)
            assert page.evaluate(drawn) > 20  # the face is on the canvas, not a black stage
            assert "listening" in page.inner_text("#status")
            shot = os.environ.get("STYLELIPSYNC_SCREENSHOT")
            if shot:
                page.screenshot(path=shot, full_page=True)
            page.click("#stop")
            page.wait_for_function("() => document.body.dataset.done === '1'", timeout=60000)
            assert "Done:" in page.inner_text("#status")
            # A speech file streamed in real time from the page.
            page.evaluate("() => { document.body.dataset.done = ''; }")
            page.wait_for_function("() => !document.getElementById('file').disabled", timeout=30000)
            page.set_input_files("#file", str(speech))
            page.wait_for_function("() => document.body.dataset.done === '1'", timeout=60000)
            status = page.inner_text("#status")
            frames = int(status.split("Done: ")[1].split(" frames")[0])
            assert frames >= 6 * 25
            assert not errors, errors
        finally:
            browser.close()
