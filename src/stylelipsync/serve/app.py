"""The FastAPI application: REST API under /v1, the web page at /, its API page at /docs.

Every error is JSON: `{"error": "<what is wrong and what to do>", "code": "<machine code>", "field": ...}`.
Routes that touch the database are plain functions (FastAPI runs them in its thread pool); the upload route
is async and streams the body to disk through `uploads.receive_form`, hands validation to the checker
process and the dubbing to the worker processes, so the event loop never waits on media work.
"""

from __future__ import annotations

import errno
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from stylelipsync import __version__
from stylelipsync.serve.checks import InputRejectedError
from stylelipsync.serve.db import FINAL, QUEUED, RUNNING, Job, JobStore
from stylelipsync.serve.service import JobService, ServeSettings, is_job_id
from stylelipsync.serve.uploads import UploadRejectedError, receive_form

STATIC_FILES = {
    "app.js": "text/javascript",
    "style.css": "text/css",
    "docs.js": "text/javascript",
}
LOOP_MODES = ("pingpong", "forward", "hold")
ENGINES = ("bank", "stylelipsync")
"""`stylelipsync.engines.ENGINES`, repeated so that the HTTP process never imports torch."""
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

UPLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["video", "audio"],
    "properties": {
        "video": {
            "type": "string",
            "format": "binary",
            "description": "The face: a video (mp4, mov, mkv, webm, …) or a photo (jpg, png, webp, bmp).",
        },
        "audio": {
            "type": "string",
            "format": "binary",
            "description": "The speech: audio (wav, mp3, m4a, flac, ogg) or a video whose audio is used.",
        },
        "engine": {
            "type": "string",
            "enum": list(ENGINES),
            "description": "bank: real mouths from the face video itself, chosen by the speech. "
            "stylelipsync: the StyleLipSync network. Default: the server's (`engine` in /healthz; bank "
            "unless the server was started with --checkpoint or --engine).",
        },
        "loop": {"type": "string", "enum": list(LOOP_MODES), "default": "pingpong"},
        "face_index": {"type": "integer", "minimum": 0, "description": "With several faces: 0 = largest."},
        "bbox": {"type": "string", "example": "100,80,420,460", "description": "X0,Y0,X1,Y1 of the face."},
        "reference_frame": {"type": "integer", "minimum": 0},
        "keep_silence": {"type": "boolean", "default": False},
        "trim": {"type": "boolean", "default": True},
        "fps": {"type": "number", "minimum": 1, "maximum": 120},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 64, "default": 8},
    },
}


class StageOut(BaseModel):
    """One stage of a job's run: frames done of total (None until the stage starts), and their ratio."""

    name: Literal["tracking", "rendering", "encoding"]
    done: int
    total: int | None
    progress: float


class JobOut(BaseModel):
    """A job as the API reports it. `progress`, `frames_done` and `frames_total` are the rendering stage's;
    `stages` has each stage (tracking the face, rendering the frames, encoding the video), `stage` the one a
    running job is in, `engine` the engine the job renders with (the one that rendered it, once done)."""

    id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: float
    frames_done: int | None
    frames_total: int | None
    error: str | None
    created: str
    started: str | None
    finished: str | None
    video_name: str
    audio_name: str
    seconds: float | None
    options: dict[str, Any]
    runs: int
    engine: Literal["bank", "stylelipsync"] | None
    stage: Literal["tracking", "rendering", "encoding"] | None
    stages: list[StageOut]
    queue_position: int | None = None
    video_url: str | None = None


class JobList(BaseModel):
    """Recent jobs, newest first."""

    jobs: list[JobOut]


class Submitted(BaseModel):
    """A job accepted into the queue."""

    id: str
    status: Literal["queued"]
    url: str


class ErrorOut(BaseModel):
    """Every error response."""

    error: str
    code: str
    field: str | None = None


class ApiError(Exception):
    """An error response: status, code, message, form field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    """The JSON error body every route uses."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message, "code": code, "field": field}, status_code=status, headers=headers)


def _parse_int(name: str, value: str, low: int, high: int | None = None) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        number = low - 1
    if number < low or (high is not None and number > high):
        span = f"{low} to {high}" if high is not None else f"{low} or more"
        raise ApiError(422, "bad_option", f"{name} must be a whole number, {span}; got {value!r}", name)
    return number


def parse_options(fields: dict[str, str]) -> dict[str, Any]:
    """Form fields → `GenerateOptions` keyword arguments (JSON-safe); `ApiError` 422 on a bad value."""
    options: dict[str, Any] = {}
    for name, raw in fields.items():
        value = raw.strip()
        if name == "loop":
            if value not in LOOP_MODES:
                raise ApiError(422, "bad_option", f"loop must be one of {', '.join(LOOP_MODES)}", name)
            options[name] = value
        elif name == "engine":
            if value.lower() not in ENGINES:
                raise ApiError(422, "bad_option", f"engine must be {' or '.join(ENGINES)}; got {raw!r}", name)
            options[name] = value.lower()
        elif name == "bank_video":
            raise ApiError(
                422,
                "unknown_field",
                "bank_video is not available on the server (it takes one face upload); dub with the "
                "face video alone, or use `stylelipsync generate --bank-video`",
                name,
            )
        elif name in ("keep_silence", "trim"):
            if value.lower() not in _TRUE | _FALSE:
                raise ApiError(422, "bad_option", f"{name} must be true or false; got {raw!r}", name)
            options[name] = value.lower() in _TRUE
        elif name in ("face_index", "reference_frame"):
            options[name] = _parse_int(name, value, 0)
        elif name == "batch_size":
            options[name] = _parse_int(name, value, 1, 64)
        elif name == "fps":
            try:
                fps = float(value)
            except ValueError:
                fps = 0.0
            if not 1 <= fps <= 120:
                raise ApiError(422, "bad_option", f"fps must be a number from 1 to 120; got {raw!r}", name)
            options[name] = fps
        elif name == "bbox":
            try:
                box = [int(float(v)) for v in value.split(",")]
            except ValueError:
                box = []
            if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
                raise ApiError(
                    422,
                    "bad_option",
                    f"bbox must be X0,Y0,X1,Y1 in pixels, e.g. 100,80,420,460; got {raw!r}",
                    name,
                )
            options[name] = box
        else:
            known = ", ".join(["video", "audio", *UPLOAD_SCHEMA["properties"].keys() - {"video", "audio"}])
            raise ApiError(
                422, "unknown_field", f"unknown form field {name!r}; the fields are: {known}", name
            )
    if "face_index" in options and "bbox" in options:
        raise ApiError(422, "bad_option", "give face_index or bbox, not both", "bbox")
    return options


def _static(name: str) -> bytes:
    return resources.files("stylelipsync.serve").joinpath("static", name).read_bytes()


def create_app(settings: ServeSettings, service: JobService | None = None) -> FastAPI:
    """The application for `settings` (a started `service` may be passed in; otherwise the app starts
    and stops its own with its lifespan)."""
    service = service or JobService(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(
        title="stylelipsync",
        version=__version__,
        description="Lip-sync dubbing: upload a face video (or photo) and speech, get the dubbed video. "
        "Errors are JSON `{error, code, field}`. With a token, every /v1 call needs "
        "`Authorization: Bearer <token>`.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail) if exc.status_code != 404 else f"nothing at {request.url.path}"
        return error_response(exc.status_code, f"http_{exc.status_code}", message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()]
        return error_response(422, "bad_request", "; ".join(parts) or "invalid request")

    def store() -> JobStore:
        if service.store is None:
            raise ApiError(503, "starting", "the server is starting or stopping; try again in a moment")
        return service.store

    def require_token(request: Request) -> None:
        if settings.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        expected = settings.token.encode()
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected):
            raise ApiError(
                401,
                "unauthorized",
                "missing or wrong token: send the header 'Authorization: Bearer <token>' with the token the "
                "server was started with (--token or STYLELIPSYNC_TOKEN)",
            )

    def find(job_id: str) -> Job:
        job = store().get(job_id) if is_job_id(job_id) else None
        if job is None:
            raise ApiError(404, "no_such_job", f"no job with id {job_id!r}; list jobs with GET /v1/jobs")
        return job

    def out(job: Job) -> dict[str, Any]:
        data = job.public()
        if job.status == QUEUED:
            data["queue_position"] = store().queue_position(job)
        if job.status == "done":
            data["video_url"] = f"/v1/jobs/{job.id}/video"
        return data

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], responses={401: {"model": ErrorOut}})

    @v1.post(
        "/jobs",
        status_code=202,
        response_model=Submitted,
        summary="Submit a dubbing job",
        description="multipart/form-data with the files `video` and `audio` and optional generate options. "
        "Both files are checked (readable media, a face in the video, speech with samples, not longer than "
        "the server's --max-seconds) before the job is queued; the upload is limited to --max-upload-mb "
        "(both files together), enforced while it streams.",
        openapi_extra={
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": UPLOAD_SCHEMA}}}
        },
        responses={
            400: {"model": ErrorOut},
            413: {"model": ErrorOut},
            415: {"model": ErrorOut},
            422: {"model": ErrorOut},
        },
    )
    async def submit(request: Request) -> JSONResponse:
        jobs = store()
        job_id = str(uuid.uuid4())
        folder = service.folder(job_id)
        try:
            await run_in_threadpool(folder.mkdir, parents=True)
            form = await receive_form(
                request.stream(),
                request.headers.get("content-type"),
                request.headers.get("content-length"),
                folder,
                max_bytes=settings.max_upload_bytes,
            )
            for name in ("video", "audio"):
                if name not in form.files:
                    raise ApiError(
                        422, "missing_file", f"no {name} file: send it as the form field {name!r}", name
                    )
            options = parse_options(form.fields)
            options.setdefault("engine", settings.default_engine)
            checked = await service.check(form.files["video"], form.files["audio"], form.names, options)
            job = Job(
                id=job_id,
                status=QUEUED,
                created=time.time(),
                video_file=form.files["video"].name,
                audio_file=form.files["audio"].name,
                video_name=form.names["video"],
                audio_name=form.names["audio"],
                options=options,
                seconds=round(checked.seconds, 3),
            )
            await run_in_threadpool(jobs.add, job)
        except (UploadRejectedError, ApiError) as exc:
            await run_in_threadpool(service.remove_files, job_id)
            return error_response(exc.status, exc.code, exc.message, exc.field)
        except InputRejectedError as exc:
            await run_in_threadpool(service.remove_files, job_id)
            return error_response(422, exc.code, exc.message, exc.field)
        except ClientDisconnect:
            await run_in_threadpool(service.remove_files, job_id)
            return error_response(400, "incomplete_upload", "the upload was interrupted; send it again")
        except OSError as exc:
            await run_in_threadpool(service.remove_files, job_id)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return error_response(507, "disk_full", "the server's disk is full; try again later")
            raise
        except BaseException:  # cancelled (client gone) or a bug: no await here, it could be cancelled too
            service.remove_files(job_id)
            raise
        url = f"/v1/jobs/{job_id}"
        return JSONResponse(
            {"id": job_id, "status": QUEUED, "url": url}, status_code=202, headers={"Location": url}
        )

    @v1.get("/jobs", response_model=JobList, summary="Recent jobs, newest first")
    def list_jobs(
        limit: int = Query(50, ge=1, le=500),
        status: Literal["queued", "running", "done", "failed", "cancelled"] | None = None,
    ) -> dict[str, Any]:
        return {"jobs": [out(j) for j in store().recent(limit, status)]}

    @v1.get(
        "/jobs/{job_id}",
        response_model=JobOut,
        summary="One job's status and progress",
        responses={404: {"model": ErrorOut}},
    )
    def get_job(job_id: str) -> dict[str, Any]:
        return out(find(job_id))

    @v1.get(
        "/jobs/{job_id}/video",
        summary="The dubbed video (MP4), once the job is done",
        response_class=FileResponse,
        responses={200: {"content": {"video/mp4": {}}}, 404: {"model": ErrorOut}},
    )
    def get_video(job_id: str, download: bool = False) -> FileResponse:
        job = find(job_id)
        if job.status != "done":
            why = {
                QUEUED: "is still queued",
                RUNNING: f"is running ({job.progress:.0%} done)",
                "failed": f"failed ({job.error})",
                "cancelled": "was cancelled",
            }[job.status]
            hint = "; the video is there once its status is done" if job.status in (QUEUED, RUNNING) else ""
            raise ApiError(404, "not_ready", f"job {job.id} {why}; it has no video{hint}")
        path = service.result_path(job)
        if path is None:
            raise ApiError(404, "no_result", f"the result of job {job.id} is missing; submit the job again")
        return FileResponse(
            path,
            media_type="video/mp4",
            filename=f"dubbed-{job.id}.mp4",
            content_disposition_type="attachment" if download else "inline",
        )

    @v1.delete(
        "/jobs/{job_id}",
        summary="Cancel a queued or running job; delete a finished one and its files",
        responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}},
    )
    def delete_job(job_id: str) -> dict[str, Any]:
        job = find(job_id)
        jobs = store()
        if job.status not in FINAL:
            cancelled = jobs.cancel(job.id)
            if cancelled is not None:
                return out(cancelled)
            job = find(job_id)
        if not jobs.delete(job.id):
            raise ApiError(
                409,
                "stopping",
                f"job {job.id} is still stopping after its cancellation; try again in a moment",
            )
        service.remove_files(job.id)
        return {"id": job.id, "deleted": True}

    app.include_router(v1)

    @app.get("/healthz", summary="Liveness: workers, queue, limits")
    def healthz() -> JSONResponse:
        pool = service.pool
        workers = pool.alive() if pool is not None else 0
        error = pool.load_error if pool is not None else None
        counts = service.store.counts() if service.store is not None else {}
        ok = service.started and workers > 0
        body = {
            "status": "ok" if ok else "error",
            "version": __version__,
            "workers": workers,
            "queued": counts.get(QUEUED, 0),
            "running": counts.get(RUNNING, 0),
            "auth": settings.token is not None,
            "max_upload_mb": settings.max_upload_bytes / 2**20,
            "max_seconds": settings.max_seconds,
            "engine": settings.default_engine,
            "error": error if not ok else None,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(_static("index.html"))

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(_static("docs.html"))

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise ApiError(404, "http_404", f"no static file {name!r}")
        return Response(_static(name), media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

    return app
