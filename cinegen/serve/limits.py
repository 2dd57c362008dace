"""Request size limits, enforced before the body is read (ASGI middleware).

A Content-Length over the limit is refused at once; a body without one (chunked) is counted
as it streams and cut off the moment it passes the limit, so no request can make the server
buffer or spool more than the limit.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised from `receive` when a streamed body passes the limit; answered 413 here."""


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_json: int, max_multipart: int) -> None:
        self.app, self.max_json, self.max_multipart = app, max_json, max_multipart

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        ctype = headers.get(b"content-type", b"").decode("latin-1").lower()
        limit = self.max_multipart if ctype.startswith("multipart/form-data") else self.max_json
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                await _reject(send, 400, "invalid_request", "Content-Length is not a number")
                return
            if too_big:
                await _reject(send, 413, "request_too_large", f"the body is over the {limit}-byte limit")
                return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _reject(send, 413, "request_too_large", f"the body is over the {limit}-byte limit")


async def _reject(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
