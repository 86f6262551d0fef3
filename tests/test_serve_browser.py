"""The web page of `stylelipsync serve` in a real browser: a `stylelipsync serve` subprocess on a free
loopback port and the system's headless Chromium (`browser.py`). The server has a (tiny, random-weight)
network, so its default engine is `stylelipsync`: choosing `bank` in the page's selector must reach the job.

A user's path through the page: choose a shared clip and a shared speech file, press Dub, follow the
per-stage progress, play the result in the page (a `<video>` whose duration is the speech's) and download it
(an MP4). And a bad upload (a text file named .mp4) must show the service's own error message, not a trace.
Set STYLELIPSYNC_SCREENSHOT=<png> to also save the finished page there (docs/images/serve_page.png in the
README is made that way).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stylelipsync.media import load_audio, probe

CLIP = "pcavs_Pose_Source_620900105.mp4"
"""4.4 s, 224², one face: a short clip so that the job takes a few seconds."""
SPEECH = "sadtalker_answer.wav"
"""2.15 s of speech."""
STARTUP_SECONDS = 600.0
JOB_SECONDS = 300.0
SCRIPT = Path(sys.executable).with_name("stylelipsync")
SERVE_COMMAND = (
    [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-c", "from stylelipsync.cli import main; main()"]
)

PLAY = """async () => {
  const v = document.getElementById("player");
  if (v.readyState < 1) {
    await new Promise((resolve, reject) => {
      v.addEventListener("loadedmetadata", resolve, { once: true });
      const failed = () => reject(new Error("video error " + (v.error && v.error.code)));
      v.addEventListener("error", failed, { once: true });
      setTimeout(() => reject(new Error("no loadedmetadata after 30 s; src=" + v.src)), 30000);
    });
  }
  const duration = v.duration;
  v.muted = true;
  await v.play();
  const start = performance.now();
  while (v.currentTime < 0.5 && !v.ended && performance.now() - start < 20000) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  v.pause();
  const played = v.currentTime;
  v.currentTime = 1.0;
  await new Promise((resolve, reject) => {
    v.addEventListener("seeked", resolve, { once: true });
    setTimeout(() => reject(new Error("no seeked after 30 s")), 30000);
  });
  return {
    duration, played, readyState: v.readyState, error: v.error ? v.error.code : null,
    width: v.videoWidth, height: v.videoHeight,
    decoded: v.getVideoPlaybackQuality().totalVideoFrames,
  };
}"""

STAGES = """() => ["tracking", "rendering", "encoding"].map((name) => {
  const row = document.getElementById("stage-" + name);
  return {
    name,
    width: parseFloat(row.querySelector(".fill").style.width) || 0,
    count: row.querySelector(".count").textContent,
    active: row.classList.contains("active"),
  };
})"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[str]:
    """`stylelipsync serve` (the installed command; one worker, default engine stylelipsync), a free port."""
    root = tmp_path_factory.mktemp("browser_serve")
    log = root / "serve.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                *SERVE_COMMAND,
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(root / "data"),
                "-c",
                str(tiny_model_dir),
            ],
            env=dict(os.environ, STYLELIPSYNC_TOKEN=""),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert proc.poll() is None, f"the server exited: {log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the server did not start: {log.read_text()[-3000:]}"
            time.sleep(0.3)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


@pytest.fixture
def browser(launch_chromium: Callable[..., Any]) -> Any:
    """Headless Chromium, launched before the server starts (so a missing browser skips at once)."""
    return launch_chromium()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    """A fresh page on the server's front page, failing the test on any script error in it (uncaught, or
    logged with console.error)."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1000, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))

    def console(msg: Any) -> None:  # a refused upload's HTTP status is logged too: the tests check those
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(f"console: {msg.text} ({msg.location})")

    tab.on("console", console)
    tab.goto(server)
    try:
        tab.wait_for_function("document.getElementById('limits').textContent.includes('MB')")
    except Exception as exc:
        raise AssertionError(f"the page did not start (no limits from /healthz shown): {errors}") from exc
    yield tab
    context.close()
    assert not errors, errors


def test_dub_in_the_page_then_play_and_download_the_result(
    page: Any, server: str, media_dir: Path, tmp_path: Path
) -> None:
    clip, speech = media_dir / CLIP, media_dir / SPEECH
    seconds = len(load_audio(speech, 16000)) / 16000
    assert page.input_value("#engine") == "stylelipsync"  # the server's default, read from /healthz
    page.set_input_files("#video", str(clip))
    page.set_input_files("#audio", str(speech))
    page.select_option("#engine", "bank")
    assert CLIP in page.text_content("#video-name")
    page.click("#go")

    seen: list[list[dict[str, Any]]] = []
    deadline = time.monotonic() + JOB_SECONDS
    while not page.is_visible("#result"):
        assert page.text_content("#job-error") == "", page.text_content("#job-error")
        assert time.monotonic() < deadline, (
            f"no result after {JOB_SECONDS} s: {page.text_content('#current')}"
        )
        seen.append(page.evaluate(STAGES))
        page.wait_for_timeout(100)
    for name in ("tracking", "rendering", "encoding"):  # the bars only grow
        widths = [stage["width"] for stages in seen for stage in stages if stage["name"] == name]
        assert widths == sorted(widths), (name, widths)
    final = page.evaluate(STAGES)
    assert [s["width"] for s in final] == [100, 100, 100], final
    frames = round(seconds * 25)
    assert all(s["count"].endswith(" frames") and not s["active"] for s in final), final
    assert abs(int(final[1]["count"].split()[0]) - frames) <= 1, final
    assert page.text_content("#job-text").startswith("done with the bank engine")
    assert page.text_content("#upload-text") == "uploaded and checked"

    video = page.evaluate(PLAY)
    assert video["error"] is None and video["readyState"] >= 2, video
    assert abs(video["duration"] - seconds) <= 0.1, (video, seconds)
    assert video["played"] >= 0.5 and video["decoded"] > 0, video  # Chromium decoded and played the H.264
    assert (video["width"], video["height"]) == (224, 224)

    row = page.locator("#jobs tbody tr").first
    row.wait_for()
    cells = row.locator("td").all_text_contents()
    assert cells[1:5] == [CLIP, SPEECH, "bank", "done"], cells

    with page.expect_download() as download_info:
        page.click("#download")
    download = download_info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.suffix == ".mp4" and saved.read_bytes()[4:8] == b"ftyp"
    info = probe(saved)
    assert (
        info.has_video
        and info.has_audio
        and info.video_codec == "h264"
        and (info.width, info.height) == (224, 224)
    )
    assert abs(info.duration - seconds) <= 0.1, (info.duration, seconds)
    href = page.get_attribute("#download", "href")
    assert href is not None
    served = httpx.get(server + href, timeout=60)
    assert served.status_code == 200 and served.headers["content-type"] == "video/mp4"
    assert served.content == saved.read_bytes()

    page.screenshot(path=str(tmp_path / "serve_page.png"), full_page=True)
    if os.environ.get("STYLELIPSYNC_SCREENSHOT"):
        page.screenshot(path=os.environ["STYLELIPSYNC_SCREENSHOT"], full_page=True)


def test_a_bad_upload_shows_the_services_message_not_a_trace(
    page: Any, server: str, media_dir: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "holiday.mp4"
    fake.write_text("these are my notes, not a video\n" * 20)
    speech = media_dir / SPEECH
    expected = httpx.post(
        f"{server}/v1/jobs",
        files={"video": (fake.name, fake.read_bytes()), "audio": (speech.name, speech.read_bytes())},
        timeout=60,
    )
    assert expected.status_code == 422 and expected.json()["code"] == "bad_video", expected.text
    message = expected.json()["error"]
    assert "holiday.mp4" in message

    page.set_input_files("#video", str(fake))
    page.set_input_files("#audio", str(speech))
    page.click("#go")
    page.wait_for_function("document.getElementById('job-error').textContent !== ''", timeout=120_000)
    assert page.text_content("#job-error") == message
    assert page.text_content("#upload-text") == "not accepted"
    assert not page.is_visible("#result")
    text = page.inner_text("body")
    assert "Traceback" not in text and 'File "' not in text and "/jobs/" not in text
    assert [s["width"] for s in page.evaluate(STAGES)] == [0, 0, 0]
