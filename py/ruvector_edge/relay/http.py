"""HTTP side of the relay: the built web app, /healthz and Prometheus /metrics.

aiohttp serves everything on one port; the web app's files must go out with
the right MIME types (`application/wasm` lets the browser stream-compile
Pyodide; `.mjs` must be JavaScript for module workers).
"""

from __future__ import annotations

import logging
import mimetypes
import time
from pathlib import Path

from aiohttp import web

from .. import __version__

log = logging.getLogger(__name__)

mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("application/json", ".json")


class HttpMetrics:
    """Counters exported in Prometheus text format."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests: dict[tuple[str, int], int] = {}

    def count(self, path_kind: str, status: int) -> None:
        key = (path_kind, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def render(self) -> str:
        lines = [
            "# HELP edge_relay_info Relay build information.",
            "# TYPE edge_relay_info gauge",
            f'edge_relay_info{{version="{__version__}"}} 1',
            "# HELP edge_relay_uptime_seconds Seconds since the relay started.",
            "# TYPE edge_relay_uptime_seconds gauge",
            f"edge_relay_uptime_seconds {time.time() - self.started:.3f}",
            "# HELP edge_relay_http_requests_total HTTP requests served, by kind and status.",
            "# TYPE edge_relay_http_requests_total counter",
        ]
        for (kind, status), value in sorted(self.requests.items()):
            lines.append(f'edge_relay_http_requests_total{{kind="{kind}",status="{status}"}} {value}')
        return "\n".join(lines) + "\n"


def build_app(web_root: Path | None) -> web.Application:
    """The relay's aiohttp application. Without a built web app, / explains how to build it."""
    metrics = HttpMetrics()
    app = web.Application()
    app["metrics"] = metrics

    @web.middleware
    async def count_requests(request: web.Request, handler):
        kind = "static"
        if request.path in ("/healthz", "/metrics"):
            kind = request.path[1:]
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.count(kind, exc.status)
            raise
        metrics.count(kind, response.status)
        return response

    app.middlewares.append(count_requests)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__, "web_app": web_root is not None})

    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

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
    return app


async def start_http(host: str, port: int, web_root: Path | None) -> web.AppRunner:
    """Start serving; the caller owns the runner and calls `cleanup()` to stop gracefully."""
    runner = web.AppRunner(build_app(web_root), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner
