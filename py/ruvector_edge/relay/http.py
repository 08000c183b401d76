"""HTTP side of the relay: the built web app, /healthz and Prometheus /metrics.

The web app's files must go out with the right MIME types (`application/wasm`
lets the browser stream-compile Pyodide; `.mjs` must be JavaScript for module
workers).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Callable

from aiohttp import web

from .. import __version__
from .metrics import RelayMetrics

mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("application/json", ".json")


def add_http_routes(app: web.Application, web_root: Path | None, metrics: RelayMetrics,
                    health: Callable[[], dict]) -> None:
    @web.middleware
    async def count_requests(request: web.Request, handler):
        kind = request.path[1:] if request.path in ("/healthz", "/metrics", "/ws") else "static"
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.count_http(kind, exc.status)
            raise
        metrics.count_http(kind, response.status)
        return response

    app.middlewares.append(count_requests)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__, "web_app": web_root is not None, **health()})

    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)

    if web_root is not None:
        index = web_root / "index.html"

        async def index_handler(_: web.Request) -> web.FileResponse:
            return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

        app.router.add_get("/", index_handler)
        app.router.add_static("/", web_root, show_index=False, follow_symlinks=False)
    else:
        async def no_app(_: web.Request) -> web.Response:
            return web.Response(
                status=503,
                text="The web app is not built. Run: bash scripts/build-web.sh (then restart edge-relay --web dist)\n",
            )

        app.router.add_get("/", no_app)
