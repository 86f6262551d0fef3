"""The FastAPI application: REST API under /v1 (`api`), the web page at / and its API page at /docs
(`pages`); `create_app` assembles them with the error handlers and the job service's lifespan.

The routes get the `JobService` and the `ServeSettings` from the app they are mounted in (the dependencies
`get_service` and `get_settings`), so one router serves any app. Every error is JSON:
`{"error": "<what is wrong and what to do>", "code": "<machine code>", "field": ...}`. Routes that touch the
database are plain functions (FastAPI runs them in its thread pool); the upload route is async and streams
the body to disk through `uploads.receive_form`, hands validation to the checker process and the dubbing to
the worker processes, so the event loop never waits on media work. The form's option fields, their schema
and their checks come from `GenerateOptions` (`pipelines.options`), which imports neither torch nor the
media stack.
"""

from __future__ import annotations

import errno
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from stylelipsync import __version__
from stylelipsync.pipelines.engines import ENGINES as ENGINES  # re-exported: the form's engine choices
from stylelipsync.pipelines.options import (
    OPTION_SPECS,
    Box,
    GenerateOptions,
    Number,
    OneOf,
    OptionError,
    Whole,
    YesNo,
    parse_strings,
)
from stylelipsync.serve.checks import InputRejectedError
from stylelipsync.serve.db import FINAL, QUEUED, RUNNING, Job, JobStore
from stylelipsync.serve.service import JobService, ServeSettings, is_job_id
from stylelipsync.serve.uploads import UploadRejectedError, receive_form

STATIC_FILES = {
    "app.js": "text/javascript",
    "style.css": "text/css",
    "docs.js": "text/javascript",
}
FORM_OPTIONS = (
    "engine",
    "loop",
    "face_index",
    "bbox",
    "reference_frame",
    "keep_silence",
    "trim",
    "fps",
    "batch_size",
)
"""The generate options a job's form may set (`bank_video` needs more uploads; `crop_output` and `overwrite`
concern files on the server)."""


def option_schema(name: str) -> dict[str, Any]:
    """The JSON schema of the form field for generate option `name`, from its spec."""
    spec, default = OPTION_SPECS[name], getattr(GenerateOptions(), name)
    schema: dict[str, Any] = {"description": spec.help}
    if isinstance(spec, Whole | Number):
        schema |= {"type": "integer" if isinstance(spec, Whole) else "number", "minimum": spec.low}
        if spec.high is not None:
            schema["maximum"] = spec.high
    elif isinstance(spec, YesNo):
        schema["type"] = "boolean"
    elif isinstance(spec, OneOf):
        schema |= {"type": "string", "enum": list(spec.choices)}
    elif isinstance(spec, Box):
        schema |= {"type": "string", "example": "100,80,420,460"}
    if default is not None:
        schema["default"] = str(default) if isinstance(spec, OneOf) else default
    if name == "engine":
        schema["description"] += " On this server the default is its own (`engine` in /healthz)."
    return schema


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
        **{name: option_schema(name) for name in FORM_OPTIONS},
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


def parse_options(fields: dict[str, str]) -> dict[str, Any]:
    """Form fields → `GenerateOptions` keyword arguments (JSON-safe), read by the options' specs; `ApiError`
    422 with the option's one message (the same as on the command line or in a jobs CSV) on a bad value."""
    for name in fields:
        if name == "bank_video":
            raise ApiError(
                422,
                "unknown_field",
                "bank_video is not available on the server (it takes one face upload); dub with the "
                "face video alone, or use `stylelipsync generate --bank-video`",
                name,
            )
        if name not in FORM_OPTIONS:
            known = ", ".join(["video", "audio", *FORM_OPTIONS])
            raise ApiError(
                422, "unknown_field", f"unknown form field {name!r}; the fields are: {known}", name
            )
    try:
        options = parse_strings(fields)
        GenerateOptions().updated(**options)
    except OptionError as exc:
        raise ApiError(422, "bad_option", str(exc), exc.name) from exc
    return {name: list(value) if isinstance(value, tuple) else value for name, value in options.items()}


def _static(name: str) -> bytes:
    return resources.files("stylelipsync.serve").joinpath("static", name).read_bytes()


def get_service(request: Request) -> JobService:
    """The job service of the app serving `request` (a FastAPI dependency; `create_app` sets it)."""
    return cast(JobService, request.app.state.service)


def get_settings(request: Request) -> ServeSettings:
    """The settings of the app serving `request` (a FastAPI dependency; `create_app` sets them)."""
    return cast(ServeSettings, request.app.state.settings)


Service = Annotated[JobService, Depends(get_service)]
Settings = Annotated[ServeSettings, Depends(get_settings)]


def require_token(request: Request, settings: Settings) -> None:
    """With a token configured, every /v1 call must send it as `Authorization: Bearer <token>`."""
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


def _store(service: JobService) -> JobStore:
    if service.store is None:
        raise ApiError(503, "starting", "the server is starting or stopping; try again in a moment")
    return service.store


def _find(service: JobService, job_id: str) -> Job:
    job = _store(service).get(job_id) if is_job_id(job_id) else None
    if job is None:
        raise ApiError(404, "no_such_job", f"no job with id {job_id!r}; list jobs with GET /v1/jobs")
    return job


def _out(service: JobService, job: Job) -> dict[str, Any]:
    data = job.public()
    if job.status == QUEUED:
        data["queue_position"] = _store(service).queue_position(job)
    if job.status == "done":
        data["video_url"] = f"/v1/jobs/{job.id}/video"
    return data


api = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], responses={401: {"model": ErrorOut}})
"""The REST API."""


@api.post(
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
async def submit(request: Request, service: Service, settings: Settings) -> JSONResponse:
    jobs = _store(service)
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


@api.get("/jobs", response_model=JobList, summary="Recent jobs, newest first")
def list_jobs(
    service: Service,
    limit: int = Query(50, ge=1, le=500),
    status: Literal["queued", "running", "done", "failed", "cancelled"] | None = None,
) -> dict[str, Any]:
    return {"jobs": [_out(service, j) for j in _store(service).recent(limit, status)]}


@api.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    summary="One job's status and progress",
    responses={404: {"model": ErrorOut}},
)
def get_job(job_id: str, service: Service) -> dict[str, Any]:
    return _out(service, _find(service, job_id))


@api.get(
    "/jobs/{job_id}/video",
    summary="The dubbed video (MP4), once the job is done",
    response_class=FileResponse,
    responses={200: {"content": {"video/mp4": {}}}, 404: {"model": ErrorOut}},
)
def get_video(job_id: str, service: Service, download: bool = False) -> FileResponse:
    job = _find(service, job_id)
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


@api.delete(
    "/jobs/{job_id}",
    summary="Cancel a queued or running job; delete a finished one and its files",
    responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}},
)
def delete_job(job_id: str, service: Service) -> dict[str, Any]:
    job = _find(service, job_id)
    jobs = _store(service)
    if job.status not in FINAL:
        cancelled = jobs.cancel(job.id)
        if cancelled is not None:
            return _out(service, cancelled)
        job = _find(service, job_id)
    if not jobs.delete(job.id):
        raise ApiError(
            409,
            "stopping",
            f"job {job.id} is still stopping after its cancellation; try again in a moment",
        )
    service.remove_files(job.id)
    return {"id": job.id, "deleted": True}


pages = APIRouter()
"""The health check, the web page, its API page and their static files."""


@pages.get("/healthz", summary="Liveness: workers, queue, limits")
def healthz(service: Service, settings: Settings) -> JSONResponse:
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


@pages.get("/", include_in_schema=False)
def index() -> HTMLResponse:
    return HTMLResponse(_static("index.html"))


@pages.get("/docs", include_in_schema=False)
def docs() -> HTMLResponse:
    return HTMLResponse(_static("docs.html"))


@pages.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    if name not in STATIC_FILES:
        raise ApiError(404, "http_404", f"no static file {name!r}")
    return Response(_static(name), media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})


async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.field)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = str(exc.detail) if exc.status_code != 404 else f"nothing at {request.url.path}"
    return error_response(exc.status_code, f"http_{exc.status_code}", message)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    parts = [f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()]
    return error_response(422, "bad_request", "; ".join(parts) or "invalid request")


def create_app(settings: ServeSettings, service: JobService | None = None) -> FastAPI:
    """The application for `settings`: the routers, the JSON error handlers and the lifespan that starts
    and stops the job service (a started `service` may be passed in; otherwise the app makes its own)."""
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
    app.state.service, app.state.settings = service, settings
    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.include_router(api)
    app.include_router(pages)
    return app
