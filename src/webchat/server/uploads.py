"""Reading an uploaded file from a multipart request, and answering with a file.

Shared by the customer chat API, its CometD side door and the agent API. The file part is read
in chunks and refused as soon as it passes the size limit, so an oversized upload costs at most
the limit in memory and is never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from webchat.protocol.gms.errors import ErrorCode
from webchat.protocol.gms.forms import collect
from webchat.server.errors import ChatError

MAX_FIELD_BYTES = 16 * 1024


@dataclass
class Upload:
    filename: str
    content_type: str
    data: bytes
    fields: dict[str, str]


async def read_upload(request: web.Request, max_file_size: int, max_fields: int, *,
                      require_file: bool = True, files: bool = True) -> Upload:
    """The one ``file`` part and the form fields around it (``files=False``: a plain form
    sent as multipart, where a file part is refused)."""
    if request.content_type != "multipart/form-data":
        raise ChatError(ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                        "a file upload must be multipart/form-data")
    pairs: list[tuple[str, str]] = []
    upload: Upload | None = None
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or not part.name:
                raise ChatError(ErrorCode.MALFORMED_REQUEST, "unnamed or nested form part")
            if part.filename is not None:
                if not files:
                    raise ChatError(ErrorCode.MALFORMED_REQUEST,
                                    "file parts are only accepted by the file endpoint")
                if part.name != "file" or upload is not None:
                    raise ChatError(ErrorCode.MALFORMED_REQUEST,
                                    "exactly one file part, named 'file', is expected")
                data = bytearray()
                while chunk := await part.read_chunk(64 * 1024):
                    data += chunk
                    if len(data) > max_file_size:
                        raise ChatError(ErrorCode.FILE_TOO_LARGE,
                                        f"the file is larger than {max_file_size} bytes")
                upload = Upload(part.filename, part.headers.get("Content-Type", ""),
                                bytes(data), {})
                continue
            raw = await part.read(decode=True)
            if len(raw) > MAX_FIELD_BYTES or len(pairs) >= max_fields:
                raise ChatError(ErrorCode.TOO_LARGE, "form fields too large or too many")
            pairs.append((part.name, raw.decode(part.get_charset("utf-8"))))
        fields = collect(pairs)
    except (ValueError, LookupError, AssertionError, HttpProcessingError) as exc:
        raise ChatError(ErrorCode.MALFORMED_REQUEST, f"malformed multipart body: {exc}"
                        ) from None
    if upload is None:
        if require_file:
            raise ChatError(ErrorCode.MISSING_FIELD, "the 'file' part is missing")
        upload = Upload("", "", b"", {})
    upload.fields.update(fields)
    return upload


def file_response(name: str, content_type: str, data: bytes) -> web.Response:
    """A file as a download, never rendered by a browser in the server's origin."""
    quoted = quote(name, safe="")
    return web.Response(body=data, headers={
        "Content-Type": content_type,
        "Content-Disposition": f"attachment; filename*=UTF-8''{quoted}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "Cache-Control": "private, no-store"})
