"use strict";
// The live page: sends 16 kHz float32 PCM (microphone or a file at real-time pace) over /ws, draws each
// dubbed JPEG frame on the canvas and plays the frame's audio in step (protocol: live/server.py).

const RATE = 16000;
const CHUNK = 320;            // 20 ms of audio per message
const $ = (id) => document.getElementById(id);
const stage = $("stage"), ctx2d = stage.getContext("2d");
let socket = null, audioCtx = null, micStream = null, micNode = null, fileTimer = null;
let frames = 0, dropped = 0, firstAt = 0, lastLatency = 0, playAt = 0, info = null;

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function stats() {
  const secs = (performance.now() - firstAt) / 1000;
  const fps = frames > 1 && secs > 0 ? (frames - 1) / secs : 0;
  $("stats").textContent = `frames ${frames} · fps ${fps.toFixed(1)} · latency ${lastLatency.toFixed(0)} ms` +
    (dropped ? ` · ${dropped} shown late` : "");
  document.body.dataset.frames = String(frames);
  document.body.dataset.fps = fps.toFixed(2);
}

function controls(running) {
  $("mic").disabled = running;
  $("file").disabled = running;
  $("stop").disabled = !running;
}

function audioContext() {
  if (!audioCtx) audioCtx = new AudioContext({ sampleRate: RATE });
  if (audioCtx.state === "suspended") audioCtx.resume();
  return audioCtx;
}

function play(pcm) {
  if (!$("listen").checked || pcm.length === 0) return;
  const ac = audioContext();
  const buf = ac.createBuffer(1, pcm.length, RATE);
  const ch = buf.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
  const src = ac.createBufferSource();
  src.buffer = buf;
  src.connect(ac.destination);
  playAt = Math.max(playAt, ac.currentTime + 0.03);
  src.start(playAt);
  playAt += buf.duration;
}

async function onFrame(data) {
  const view = new DataView(data);
  const headerLen = view.getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(data, 4, headerLen)));
  const jpeg = new Blob([new Uint8Array(data, 4 + headerLen, header.jpeg)], { type: "image/jpeg" });
  const pcmStart = 4 + headerLen + header.jpeg;
  const pcm = new Int16Array(data.slice(pcmStart, pcmStart + 2 * header.pcm));
  if (frames === 0) firstAt = performance.now();
  frames += 1;
  lastLatency = header.latency_ms;
  play(pcm);
  if (header.jpeg === 0) { dropped += 1; stats(); return; }  // the server is catching up: keep the picture
  const bitmap = await createImageBitmap(jpeg);
  ctx2d.drawImage(bitmap, 0, 0, stage.width, stage.height);
  bitmap.close();
  stats();
}

function connect() {
  return new Promise((resolve, reject) => {
    frames = 0; dropped = 0; playAt = 0;
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") { onFrame(ev.data); return; }
      const msg = JSON.parse(ev.data);
      if (msg.type === "ready") { status("Live: speak or stream a file."); resolve(ws); }
      else if (msg.type === "busy") { status(msg.message, true); reject(new Error(msg.message)); }
      else if (msg.type === "error") { status(`Error: ${msg.message}`, true); }
      else if (msg.type === "done") {
        document.body.dataset.done = "1";
        status(`Done: ${msg.frames} frames, ${msg.fps} fps, latency p95 ${msg.latency_p95_ms} ms` +
               (msg.recording ? `, recorded to ${msg.recording}` : ""));
      }
    };
    ws.onerror = () => { status("Connection failed.", true); reject(new Error("connection failed")); };
    ws.onclose = () => { stopInput(); controls(false); socket = null; };
    socket = ws;
  });
}

function send(samples) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(samples.buffer);
}

function stopInput() {
  if (fileTimer) { clearInterval(fileTimer); fileTimer = null; }
  if (micNode) { micNode.disconnect(); micNode = null; }
  if (micStream) { micStream.getTracks().forEach((t) => t.stop()); micStream = null; }
}

async function startMic() {
  try {
    controls(true);
    $("listen").checked = false;  // your own voice, played back late, would echo
    await connect();
    const ac = audioContext();
    micStream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
    const source = ac.createMediaStreamSource(micStream);
    micNode = ac.createScriptProcessor(1024, 1, 1);
    micNode.onaudioprocess = (ev) => {
      send(new Float32Array(ev.inputBuffer.getChannelData(0)));
      ev.outputBuffer.getChannelData(0).fill(0);
    };
    source.connect(micNode);
    micNode.connect(ac.destination);
    status("Live: listening to the microphone.");
  } catch (err) {
    status(`Microphone: ${err.message}`, true);
    if (socket) socket.close();
    controls(false);
  }
}

async function startFile(file) {
  try {
    controls(true);
    const ac = audioContext();
    const decoded = await ac.decodeAudioData(await file.arrayBuffer());
    const mono = new Float32Array(decoded.length);
    for (let c = 0; c < decoded.numberOfChannels; c++) {
      const ch = decoded.getChannelData(c);
      for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / decoded.numberOfChannels;
    }
    await connect();
    status(`Streaming ${file.name} (${decoded.duration.toFixed(1)} s) in real time…`);
    const start = performance.now();
    let pos = 0;
    fileTimer = setInterval(() => {
      const due = Math.min(mono.length, Math.floor(((performance.now() - start) / 1000) * RATE));
      while (pos + CHUNK <= due || (due === mono.length && pos < due)) {
        send(mono.slice(pos, Math.min(pos + CHUNK, due)));
        pos = Math.min(pos + CHUNK, due);
      }
      if (pos >= mono.length) {
        clearInterval(fileTimer); fileTimer = null;
        if (socket) socket.send(JSON.stringify({ type: "end" }));
      }
    }, 10);
  } catch (err) {
    status(`File: ${err.message}`, true);
    if (socket) socket.close();
    controls(false);
  }
}

$("mic").onclick = startMic;
$("file").onchange = (ev) => { if (ev.target.files.length) startFile(ev.target.files[0]); };
$("stop").onclick = () => {
  stopInput();
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "end" }));
};

fetch("/info").then((r) => r.json()).then((i) => {
  info = i;
  stage.width = i.width; stage.height = i.height;
  $("about").textContent = `${i.video}: ${i.width}×${i.height} at ${i.fps} fps, ${i.bank_entries} mouths in the bank, ` +
    `delay ${i.delay_ms} ms (look-ahead and ${i.lag} frames of selection).`;
  status("Ready: speak into the microphone or stream a speech file.");
  controls(false);
}).catch(() => status("Cannot reach the live server.", true));
