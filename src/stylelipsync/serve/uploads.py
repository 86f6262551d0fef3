"""Receive a multipart upload straight to disk, enforcing the size limit while it streams.

FastAPI's `UploadFile` spools the whole body before the handler sees it, so a 10 GB upload would fill the
disk before any limit could be checked. Here the request body is fed chunk by chunk to python-multipart's
streaming parser: file parts go to `<job folder>/<field><ext>` (the client's file name is kept only as a
label, and only its extension is used, after checking it is a plain short suffix), other parts are small
form fields. Counting starts at the first byte, and the upload stops as soon as the limit is passed. Parsing
and disk writes run in a worker thread, in batches of about 1 MB, so the event loop never waits on them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

_BATCH = 1 << 20
_SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")


class UploadRejectedError(Exception):
    """The upload cannot be accepted: HTTP status, error code, message for the user, form field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(status, code, message, field)
        self.status, self.code, self.message, self.field = status, code, message, field


def safe_suffix(filename: str) -> str:
    """The client file name's extension if it is a plain one (".mp4", ".jpg"), else ""."""
    suffix = Path(filename.replace("\\", "/")).suffix.lower()
    return suffix if _SAFE_SUFFIX.match(suffix) else ""


def display_name(filename: str, limit: int = 120) -> str:
    """The client's file name as a label: base name only, no control characters, at most `limit` chars."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    return clean[:limit] or "upload"


@dataclass
class ReceivedForm:
    """What an upload delivered: saved files (by field), their client names, and the plain fields."""

    files: dict[str, Path] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)


class _Sink:
    """python-multipart callbacks: route each part to a file on disk or a small in-memory field."""

    def __init__(self, folder: Path, file_fields: tuple[str, ...], max_fields: int, max_field_bytes: int):
        self.folder, self.file_fields = folder, file_fields
        self.max_fields, self.max_field_bytes = max_fields, max_field_bytes
        self.form = ReceivedForm()
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._file: IO[bytes] | None = None
        self._value = bytearray()
        self.ended = False

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        self._headers, self._name, self._value = {}, "", bytearray()
        self._header_name = self._header_value = b""

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if not name:
            raise UploadRejectedError(400, "bad_form", "a form part has no name; send multipart/form-data")
        if name in self.form.files or name in self.form.fields:
            raise UploadRejectedError(422, "duplicate_field", f"the form field {name!r} was sent twice", name)
        self._name = name
        if name in self.file_fields:
            label = display_name(filename.decode("utf-8", "replace")) if filename is not None else name
            path = self.folder / f"{name}{safe_suffix(label)}"
            self._file = open(path, "wb")  # noqa: SIM115  (closed in part_end or close())
            self.form.files[name] = path
            self.form.names[name] = label
        elif len(self.form.fields) >= self.max_fields:
            raise UploadRejectedError(422, "too_many_fields", f"more than {self.max_fields} form fields")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.write(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > self.max_field_bytes:
            raise UploadRejectedError(
                422,
                "field_too_long",
                f"the form field {self._name!r} is longer than {self.max_field_bytes} bytes; files go in the "
                f"fields {' and '.join(self.file_fields)}",
                self._name,
            )

    def part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._name:
            self.form.fields[self._name] = self._value.decode("utf-8", "replace")

    def end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _boundary(content_type: str | None) -> bytes:
    kind, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadRejectedError(
            415,
            "not_multipart",
            "send the files as multipart/form-data (e.g. curl -F video=@face.mp4 -F audio=@speech.wav)",
        )
    return boundary


async def receive_form(
    body: AsyncIterator[bytes],
    content_type: str | None,
    content_length: str | None,
    folder: Path,
    *,
    max_bytes: int,
    file_fields: tuple[str, ...] = ("video", "audio"),
    max_fields: int = 32,
    max_field_bytes: int = 1024,
) -> ReceivedForm:
    """Stream a multipart body into `folder`; `UploadRejectedError` (413) as soon as it passes `max_bytes`."""
    boundary = _boundary(content_type)
    too_large = UploadRejectedError(
        413,
        "too_large",
        f"the upload is larger than the server's limit of {max_bytes / 2**20:g} MB "
        "(both files together); send a shorter or more compressed clip, or ask for a larger --max-upload-mb",
    )
    if content_length is not None and content_length.isdigit() and int(content_length) > max_bytes:
        raise too_large
    sink = _Sink(folder, file_fields, max_fields, max_field_bytes)
    parser = MultipartParser(boundary, sink.callbacks())  # type: ignore[arg-type]
    received = 0
    pending: list[bytes] = []
    pending_size = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > max_bytes:
                raise too_large
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= _BATCH:
                await run_in_threadpool(parser.write, b"".join(pending))
                pending, pending_size = [], 0
        if pending:
            await run_in_threadpool(parser.write, b"".join(pending))
        parser.finalize()
    except MultipartParseError as exc:
        raise UploadRejectedError(400, "bad_form", f"the multipart body is malformed ({exc})") from exc
    finally:
        sink.close()
    if not sink.ended:
        raise UploadRejectedError(
            400, "incomplete_upload", "the upload ended before the end of the form; send it again"
        )
    return sink.form
