"""Uploads: a request body limit, multipart parsing kept in memory, and checking the photo.

Nothing of an upload is written to disk: the body is capped (BODY_LIMIT), the multipart parser keeps
file parts in memory up to that cap, and the photo is opened only through
`geoloc.imagefile.open_image`. Every refusal is an `UploadError` carrying its HTTP status.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath, PureWindowsPath

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from ..errors import InputError
from ..imagefile import MAX_IMAGE_BYTES, open_image

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the one photo
BODY_LIMIT = MAX_IMAGE_BYTES + MULTIPART_OVERHEAD
FILE_FIELD = "file"
MAX_NAME = 200
FORMATS = "JPEG, PNG or WebP"


class UploadError(InputError):
    """A refused upload; `status` is the HTTP status it is answered with (413, 415 or 422)."""

    def __init__(self, message: str, status: int = 422, hint: str | None = None):
        super().__init__(message, hint)
        self.status = status


def too_large(size: int | None = None) -> UploadError:
    what = f"{size:,} bytes" if size is not None else "more bytes than allowed"
    return UploadError(f"request body: {what}, more than the limit of {BODY_LIMIT:,}", 413)


class BodyLimit:
    """ASGI middleware: refuse bodies over LIMIT bytes (announced or streamed) with 413 JSON."""

    def __init__(self, app, limit: int = BODY_LIMIT):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _send_error(send, too_large(int(length)))
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise too_large()
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except UploadError as exc:  # raised while the body streamed in, past the app's handlers
            if started:
                raise
            await _send_error(send, exc)


async def _send_error(send, exc: UploadError) -> None:
    body = json.dumps({"error": str(exc), "hint": exc.hint}).encode()
    await send({"type": "http.response.start", "status": exc.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class _InMemoryParser(MultiPartParser):
    spool_max_size = BODY_LIMIT  # a SpooledTemporaryFile below its max_size never touches the disk


def safe_name(filename: str | None) -> str:
    """The base name of a client's file name (no folders), shortened; 'upload' when there is none."""
    name = PureWindowsPath(PurePosixPath(filename or "").name).name.strip()
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:MAX_NAME] or "upload"


async def read_upload(request) -> tuple[str, bytes]:
    """(file name, bytes) of the multipart field 'file'; UploadError when there is none."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise UploadError(f"request body: expected multipart/form-data with the photo in field '{FILE_FIELD}', "
                          f"got '{ctype or 'no content type'}'", 415)
    try:
        form = await _InMemoryParser(request.headers, request.stream(), max_files=1, max_fields=8).parse()
    except MultiPartException as exc:
        raise UploadError(f"request body: malformed multipart form ({exc.message})", 422) from None
    part = form.get(FILE_FIELD)
    if not isinstance(part, UploadFile):
        raise UploadError(f"request body: no file in field '{FILE_FIELD}' (send the photo as "
                          f"multipart/form-data, e.g. curl -F {FILE_FIELD}=@photo.jpg)", 422)
    data = part.file.read()
    part.file.close()
    return safe_name(part.filename), data


def image_kind(data: bytes) -> str | None:
    """'jpeg', 'png' or 'webp' from the first bytes; None for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def check_photo(data: bytes, name: str) -> None:
    """Refuse anything but a readable JPEG/PNG/WebP within the byte and pixel limits of imagefile."""
    if data and len(data) <= MAX_IMAGE_BYTES and image_kind(data) is None:
        raise UploadError(f"{name}: not a {FORMATS} image", 415)
    try:
        open_image(data, name=name)
    except InputError as exc:
        # open_image words both of its size limits as '..., more than the limit of N'
        raise UploadError(str(exc), 413 if "more than the limit" in str(exc) else 422) from None
