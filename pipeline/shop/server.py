"""The web page's server: FastAPI, the page at ``/``, the model it shows at ``/about``, a photo posted to
``/segment``, nothing else.

No documentation pages (FastAPI's load their scripts from a CDN), no analytics, no assets but the
page itself; uvicorn serves it on localhost unless told otherwise.
"""

from __future__ import annotations

import logging
import socket
from urllib.parse import unquote, urlsplit

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect

from pipeline.shop.page import PAGE, PhotoDesk, Refused, megabytes
from pipeline.utils.errors import PipelineError

log = logging.getLogger(__name__)


#: The names a browser on this machine reaches the page by.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def make_app(desk: PhotoDesk, hosts: tuple[str, ...] = LOCAL_HOSTS) -> FastAPI:
    """The page and its one action, around ``desk`` (the model, its limits, its queue).

    Requests must name one of ``hosts`` (another name is a web page's DNS rebinding), and a photo may be posted
    only from the page itself (the browser's ``Origin``): another site open in the same browser cannot use it.
    """
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))
    page = PAGE.read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/about")
    def about() -> dict:
        """What the page says above the photo: the model, and why there are no similar items when there are none."""
        return {"family": desk.model.family, "checkpoint": desk.model.info["checkpoint"],
                "max_mb": float(megabytes(desk.limits.max_bytes)), "similar": desk.no_similar is None,
                "no_similar": desk.no_similar}

    @app.post("/segment")
    async def segment(request: Request) -> JSONResponse:
        name = unquote(request.headers.get("x-photo-name", "photo"))[:200] or "photo"
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            return _refusal(Refused(403, f"{name}: posted from another site ({origin[:100]})"))
        try:
            with desk.place():  # before the bytes are read: a full queue answers at once
                return JSONResponse(await _answer(desk, request, name))
        except Refused as exc:
            return _refusal(exc)
        except ClientDisconnect:  # the tab was closed or reloaded mid-upload: no one to answer
            log.info("%s: the browser left during the upload", name)
            return Response(status_code=499)
        except PipelineError as exc:
            return _refusal(Refused(400, str(exc)))
        except Exception as exc:  # the page gets a message, the log the traceback
            log.exception("%s: segmenting failed", name)
            return _refusal(Refused(500, f"{name}: the server failed ({type(exc).__name__}: {exc}); its log says "
                                         "more"))

    return app


async def _answer(desk: PhotoDesk, request: Request, name: str) -> dict:
    """Read the photo (refused as soon as it is known to be too large) and segment it in a worker thread."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > desk.limits.max_bytes:
        raise desk.too_large(name, int(declared))
    data = await _body(request, desk.limits.max_bytes)
    if data is None:
        raise desk.too_large(name, None)
    return await run_in_threadpool(desk.answer, data, name)


async def _body(request: Request, limit: int) -> bytes | None:
    """The request's bytes, or None as soon as they pass ``limit`` (a sender may not declare its length)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _refusal(exc: Refused) -> JSONResponse:
    log.info("refused (%d): %s", exc.status, exc)
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` (before the model loads: a taken port is said at once, in one line)."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host.strip("[]"), port))
    except OSError as exc:
        listener.close()
        raise PipelineError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); another server may use it: "
                            "choose another --port") from exc
    return listener


#: Connections uvicorn takes beyond the photos that may wait: the page, ``/about`` and a few busy answers.
SPARE_CONNECTIONS = 8


def serve(app: FastAPI, listener: socket.socket, max_waiting: int) -> None:
    """Serve ``app`` on the bound socket until Ctrl-C; connections beyond what ``max_waiting`` photos and
    ``SPARE_CONNECTIONS`` need are answered 503 by uvicorn itself."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", limit_concurrency=max_waiting + 1 + SPARE_CONNECTIONS)
    uvicorn.Server(config).run(sockets=[listener])
