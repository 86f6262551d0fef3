// stylelipsync web page: submit a job with upload progress, follow it, play and download the result.
"use strict";

const $ = (id) => document.getElementById(id);
let token = localStorage.getItem("stylelipsync-token") || "";
let current = null;       // id of the job this page follows
let limits = { max_upload_mb: 0, max_seconds: 0 };

function headers() {
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (response.status === 401) $("auth").hidden = false;
  return response;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error || response.statusText;
  } catch (e) {
    return response.status + " " + response.statusText;
  }
}

// -- file choosers with drag and drop -------------------------------------------------------------------

for (const field of ["video", "audio"]) {
  const zone = $("drop-" + field);
  const input = $(field);
  const show = () => {
    const file = input.files[0];
    $(field + "-name").textContent = file ? `${file.name} (${(file.size / 2 ** 20).toFixed(1)} MB)` : "drop a file here or click to choose";
    zone.classList.toggle("filled", Boolean(file));
  };
  input.addEventListener("change", show);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      show();
    }
  });
}

// -- engine ---------------------------------------------------------------------------------------------

const ENGINE_HINTS = {
  bank: "Real mouths taken from the face video itself, chosen to match the speech: sharp lips and teeth.",
  stylelipsync: "The StyleLipSync network draws the lower face: any mouth shape, but softer detail.",
};

function showEngineHint() {
  $("engine-hint").textContent = ENGINE_HINTS[$("engine").value] || "";
}

$("engine").addEventListener("change", showEngineHint);
showEngineHint();

function engineOf(job) {
  return job.engine || (job.options && job.options.engine) || "";
}

// -- submit ---------------------------------------------------------------------------------------------

function formData() {
  const form = $("submit-form");
  const data = new FormData();
  data.append("video", $("video").files[0]);
  data.append("audio", $("audio").files[0]);
  data.append("engine", form.engine.value);
  data.append("loop", form.loop.value);
  if (form.face_index.value !== "") data.append("face_index", form.face_index.value);
  if (form.keep_silence.checked) data.append("keep_silence", "true");
  if (form.no_trim.checked) data.append("trim", "false");
  return data;
}

function percent(fraction) {
  return Math.round(Math.max(0, Math.min(1, fraction)) * 100);
}

function setBar(id, fraction) {
  $(id).style.width = percent(fraction) + "%";
}

// One bar per stage of the job's run (tracking the face, rendering, encoding): they overlap while the job
// runs, so each shows its own frames.
const STAGES = ["tracking", "rendering", "encoding"];

function showStages(job) {
  const stages = Object.fromEntries((job.stages || []).map((s) => [s.name, s]));
  for (const name of STAGES) {
    const row = $("stage-" + name);
    const stage = stages[name] || { done: 0, total: null, progress: 0 };
    row.querySelector(".fill").style.width = percent(stage.progress) + "%";
    row.classList.toggle("active", job.stage === name);
    let count = "";
    if (job.status === "done") count = stage.total ? `${stage.total} frames` : "done";
    else if (stage.total) count = `${stage.done} of ${stage.total} frames`;
    else if (job.stage === name) count = "starting…";
    if (job.status === "running" && name === "encoding" && stage.total && stage.done >= stage.total) {
      count = "finishing the file…";
    }
    row.querySelector(".count").textContent = count;
  }
}

$("submit-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const video = $("video").files[0];
  const audio = $("audio").files[0];
  if (!video || !audio) {
    $("current").hidden = false;
    $("job-error").textContent = "Choose a face (video or photo) and a speech file first.";
    return;
  }
  const size = (video.size + audio.size) / 2 ** 20;
  $("current").hidden = false;
  $("result").hidden = true;
  $("job-error").textContent = "";
  $("job-text").textContent = "";
  showStages({ status: "queued", stages: [] });
  setBar("upload-bar", 0);
  $("current-title").textContent = `${video.name} + ${audio.name}`;
  if (limits.max_upload_mb && size > limits.max_upload_mb) {
    $("job-error").textContent = `The two files are ${size.toFixed(1)} MB together; this server takes at most ${limits.max_upload_mb} MB.`;
    return;
  }
  $("go").disabled = true;
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/jobs");
  if (token) xhr.setRequestHeader("Authorization", "Bearer " + token);
  xhr.upload.onprogress = (e) => {
    if (!e.lengthComputable) return;
    setBar("upload-bar", e.loaded / e.total);
    $("upload-text").textContent = `uploading: ${(e.loaded / 2 ** 20).toFixed(1)} of ${(e.total / 2 ** 20).toFixed(1)} MB`;
  };
  xhr.upload.onload = () => { $("upload-text").textContent = "uploaded; checking the files…"; };
  xhr.onload = () => {
    $("go").disabled = false;
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (e) { body = { error: xhr.statusText }; }
    if (xhr.status === 202) {
      setBar("upload-bar", 1);
      $("upload-text").textContent = "uploaded and checked";
      follow(body.id);
      refreshList();
    } else {
      if (xhr.status === 401) $("auth").hidden = false;
      $("upload-text").textContent = "not accepted";
      $("job-error").textContent = body.error || `error ${xhr.status}`;
    }
  };
  xhr.onerror = () => {
    $("go").disabled = false;
    $("job-error").textContent = "The upload failed (connection lost, or the files are larger than the server accepts).";
  };
  xhr.send(formData());
});

// -- follow one job -------------------------------------------------------------------------------------

const STAGE_WORDS = { tracking: "tracking the face", rendering: "rendering", encoding: "encoding" };

function describe(job) {
  const engine = engineOf(job) ? ` with the ${engineOf(job)} engine` : "";
  if (job.status === "queued") return `waiting in the queue (${job.queue_position || 0} job(s) ahead)${engine}`;
  if (job.status === "running") return `dubbing${engine}: ${STAGE_WORDS[job.stage] || "starting"}…`;
  if (job.status === "done") return `done${engine}: ${job.frames_total} frames`;
  return job.status;
}

async function follow(id) {
  current = id;
  $("current").hidden = false;
  $("cancel").hidden = false;
  while (current === id) {
    const response = await api(`/v1/jobs/${id}`);
    if (!response.ok) {
      $("job-error").textContent = await errorText(response);
      break;
    }
    const job = await response.json();
    $("current-title").textContent = `${job.video_name} + ${job.audio_name}`;
    showStages(job);
    $("job-text").textContent = describe(job);
    if (job.status === "failed" || job.status === "cancelled") {
      $("job-error").textContent = job.error || job.status;
    }
    if (["done", "failed", "cancelled"].includes(job.status)) {
      $("cancel").hidden = true;
      if (job.status === "done") await showResult(job);
      refreshList();
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 700));
  }
}

let objectUrl = null;

async function showResult(job) {
  const url = `/v1/jobs/${job.id}/video`;
  if (objectUrl) URL.revokeObjectURL(objectUrl);
  objectUrl = null;
  let src = url;
  if (token) {                                  // a <video> cannot send the token: fetch it first
    const response = await api(url);
    if (!response.ok) { $("job-error").textContent = await errorText(response); return; }
    objectUrl = URL.createObjectURL(await response.blob());
    src = objectUrl;
  }
  $("player").src = src;
  $("download").href = token ? src : url + "?download=true";
  $("download").setAttribute("download", `dubbed-${job.id}.mp4`);
  $("result").hidden = false;
}

$("cancel").addEventListener("click", async () => {
  if (!current) return;
  const response = await api(`/v1/jobs/${current}`, { method: "DELETE" });
  if (!response.ok) $("job-error").textContent = await errorText(response);
});

// -- recent jobs ----------------------------------------------------------------------------------------

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function button(label, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "small";
  b.textContent = label;
  b.addEventListener("click", action);
  return b;
}

async function refreshList() {
  const response = await api("/v1/jobs?limit=30");
  if (!response.ok) return;
  const { jobs } = await response.json();
  const body = $("jobs").querySelector("tbody");
  body.replaceChildren();
  $("jobs-empty").hidden = jobs.length > 0;
  for (const job of jobs) {
    const row = document.createElement("tr");
    cell(row, new Date(job.created).toLocaleString());
    cell(row, job.video_name, "name").title = job.video_name;
    cell(row, job.audio_name, "name").title = job.audio_name;
    cell(row, engineOf(job));
    const stage = (job.stages || []).find((s) => s.name === job.stage);
    const status = job.status === "running" && stage ? `${job.stage} ${percent(stage.progress)}%` : job.status;
    const statusCell = cell(row, status, "status-" + job.status);
    if (job.error) statusCell.title = job.error;
    const actions = cell(row, "");
    if (job.status === "done") actions.appendChild(button("watch", () => { $("current").hidden = true; showResult(job); }));
    if (job.status === "queued" || job.status === "running") {
      actions.appendChild(button("follow", () => follow(job.id)));
    }
    const done = ["done", "failed", "cancelled"].includes(job.status);
    actions.appendChild(button(done ? "delete" : "cancel", async () => {
      const r = await api(`/v1/jobs/${job.id}`, { method: "DELETE" });
      if (!r.ok) alert(await errorText(r));
      refreshList();
    }));
    body.appendChild(row);
  }
}

// -- start ----------------------------------------------------------------------------------------------

$("save-token").addEventListener("click", () => {
  token = $("token").value.trim();
  localStorage.setItem("stylelipsync-token", token);
  $("auth").hidden = true;
  refreshList();
});

async function start() {
  try {
    const health = await (await fetch("/healthz")).json();
    limits = health;
    $("limits").textContent = `up to ${health.max_upload_mb} MB per job, ${health.max_seconds} s of speech`;
    if (health.auth && !token) $("auth").hidden = false;
    if (health.engine && ENGINE_HINTS[health.engine]) {
      $("engine").value = health.engine;
      showEngineHint();
    }
  } catch (e) {
    $("limits").textContent = "the server does not answer";
  }
  refreshList();
  setInterval(refreshList, 3000);
}

start();
