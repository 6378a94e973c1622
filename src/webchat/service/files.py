"""File commands: limits, upload, download, delete (protocols.md §1.10).

In Python a file is a path, or bytes with a name; the server decides what is allowed (type,
size, count, total) and checks the bytes, so the service sends what it is given and reports
the server's refusal with its code (201, 202, 203, or ours).
"""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from typing import Any

from webchat.bus.bus import CommandError
from webchat.protocol.gms.models import ChatResponse
from webchat.service.core import ServiceCore, builtins, check_options
from webchat.transport.rest import Download

LIMITS_NOTICE = "file-client-cfg-get"


class FileCommands(ServiceCore):
    async def get_file_limits(self, options: dict[str, Any]) -> Any:
        """The chat's upload limits as the server reports them (all values strings)."""
        check_options(options, {})
        self.require_session()
        request = self.request(self.session.file_limits)
        response = await self.carry(request)
        self.raise_for(response)
        for message in response.messages or ():
            if message.text == LIMITS_NOTICE and message.userData is not None:
                return dict(message.userData)
        raise CommandError("the server's reply carried no file limits", builtins(response))

    async def send_file(self, options: dict[str, Any]) -> Any:
        opts = check_options(options, {"file": (str, Path), "data": bytes, "fileName": str,
                                       "contentType": str, "description": str})
        if (opts.get("file") is None) == (opts.get("data") is None):
            raise CommandError("give either 'file' (a path) or 'data' with 'fileName'")
        self.require_session()
        if opts.get("file") is not None:
            path = Path(opts["file"])
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                raise CommandError(f"cannot read {path}: {exc.strerror}") from None
            name = opts.get("fileName") or path.name
        else:
            data, name = opts["data"], opts.get("fileName")
            if not name:
                raise CommandError("option 'fileName' is required with 'data'")
        ctype = opts.get("contentType") or mimetypes.guess_type(name)[0] \
            or "application/octet-stream"
        request = self.request(lambda: self.session.upload_file(opts.get("description")))
        response = await self.guarded(self.transport.upload(request, name, data, ctype),
                                       request)
        self.apply(request, response)
        self.raise_for(response)
        return builtins(response)

    async def download_file(self, options: dict[str, Any]) -> Any:
        opts = check_options(options, {"fileId": str, "path": (str, Path)},
                             required=("fileId",))
        request = self.request(lambda: self.session.download_file(opts["fileId"]))
        got = await self.guarded(self.transport.download(request), request)
        if isinstance(got, ChatResponse):
            self.raise_for(got)
            raise CommandError("the server sent no file", builtins(got))
        result = _describe(opts["fileId"], got)
        if opts.get("path") is not None:
            target = Path(opts["path"])
            await asyncio.to_thread(target.write_bytes, got.data)
            result["path"] = str(target)
        else:
            result["data"] = got.data
        return result

    async def delete_file(self, options: dict[str, Any]) -> Any:
        opts = check_options(options, {"fileId": str}, required=("fileId",))
        self.require_session()
        return await self.operation(lambda: self.session.delete_file(opts["fileId"]))


def _describe(file_id: str, got: Download) -> dict[str, Any]:
    return {"fileId": file_id, "fileName": got.filename, "contentType": got.content_type,
            "size": len(got.data)}
