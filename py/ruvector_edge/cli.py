"""Command-line entry points: edge-relay and edge-demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from . import __version__
from .logsetup import configure_logging

log = logging.getLogger("ruvector_edge")


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def relay_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edge-relay",
        description="Relay node: routes swarm frames (/ws) and serves the browser app, /healthz and /metrics on one port.",
        epilog="Log level: EDGE_LOG (or RUST_LOG) = debug|info|warning|error.",
    )
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8080), metavar="HOST:PORT",
                        help="address to listen on (default 127.0.0.1:8080)")
    parser.add_argument("--web", type=Path, default=None, metavar="DIR",
                        help="built web app to serve (default: ./dist if it exists)")
    parser.add_argument("--version", action="version", version=f"edge-relay {__version__}")
    args = parser.parse_args(argv)
    configure_logging()
    web_root = args.web if args.web is not None else (Path("dist") if Path("dist/index.html").exists() else None)
    if web_root is not None and not (web_root / "index.html").exists():
        parser.error(f"{web_root}/index.html not found; build the app first: bash scripts/build-web.sh")
    return asyncio.run(_serve_relay(*args.listen, web_root))


async def _serve_relay(host: str, port: int, web_root: Path | None) -> int:
    from .relay.server import RelayServer

    server = RelayServer(host, port, web_root)
    try:
        await server.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        return 2
    shown = f"[{host}]" if ":" in host else host
    port = server.port
    print(f"edge-relay {__version__} listening on http://{shown}:{port}/ (agents: ws://{shown}:{port}/ws)", flush=True)
    if web_root is None:
        print("no web app to serve (build it with: bash scripts/build-web.sh)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    return 0


def demo_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edge-demo",
        description="Local swarm demo: a coordinator and three workers exchange signed, encrypted frames.",
    )
    parser.add_argument("--version", action="version", version=f"edge-demo {__version__}")
    parser.parse_args(argv)
    configure_logging("warning")
    from .demo import run_demo

    summary = asyncio.run(run_demo())
    return 0 if summary["rejected"] == summary["attacks"] else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(relay_main())
