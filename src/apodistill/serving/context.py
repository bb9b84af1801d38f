"""Request ids, access logs and bearer-token auth for `apodistill serve` (ASGI middleware).

Every log line of the server names the request it belongs to: the id is a context variable
set for the request's task, so lines logged while handling it (by us, FastAPI or uvicorn)
carry it, and it is echoed to the client in ``X-Request-ID``.
"""

from __future__ import annotations

import contextvars
import hmac
import json
import logging
import re
import time
import uuid
from typing import Any

log = logging.getLogger("apodistill.serve")
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_RID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContext:
    """ASGI middleware: a request id for every request (context variable, response header, log
    lines), one access log line per request, and the bearer-token check on /v1/."""

    def __init__(self, app, api_key: str | None = None):
        self.app, self.api_key = app, api_key

    def _authorized(self, scope) -> bool:
        if not self.api_key or not scope["path"].startswith("/v1/"):
            return True
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _RID.match(given) else uuid.uuid4().hex[:16]
        token = REQUEST_ID.set(rid)
        status, t0 = [0], time.perf_counter()

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            if self._authorized(scope):
                await self.app(scope, receive, send_with_id)
            else:
                body = json.dumps({"error": {"message": "missing or invalid API key: send Authorization: Bearer <key> "
                                             "(the value of the variable named by apodistill serve --api-key-env)",
                                             "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}).encode()
                await send_with_id({"type": "http.response.start", "status": 401,
                                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send_with_id({"type": "http.response.body", "body": body})
        finally:
            log.info("%s %s %d %.3fs", scope.get("method"), scope.get("path"), status[0], time.perf_counter() - t0)
            REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


LOG_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


def log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's and ours, one format, the request id in every line."""
    handler = {"class": "logging.StreamHandler", "formatter": "rid", "filters": ["rid"], "stream": "ext://sys.stdout"}
    loggers = {name: {"handlers": ["default"], "level": level.upper(), "propagate": False}
               for name in ("uvicorn", "uvicorn.error", "apodistill.serve")}
    return {"version": 1, "disable_existing_loggers": False,
            "filters": {"rid": {"()": RequestIdFilter}},
            "formatters": {"rid": {"format": LOG_FORMAT}},
            "handlers": {"default": handler}, "loggers": loggers}
