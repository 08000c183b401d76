"""The JSON-lines loop the native e2e helpers (native_peer.py, native_tasks.py) share.

One request per line on stdin, one answer per line on stdout; serving ends at end
of input, so a helper cannot outlive the test that started it.
"""

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable

Handler = Callable[[str, dict], Awaitable["dict | None"]]


async def serve(handle: Handler) -> None:
    """Answer each request with ``await handle(req["cmd"], req)`` until end of input.

    ``None`` from the handler answers ``{"error": "unknown command ..."}``; an
    exception is answered as ``{"error": "Type: message"}`` and serving goes on
    (the test decides what is fatal).
    """
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        req = json.loads(line)
        cmd = req["cmd"]
        try:
            out = await handle(cmd, req)
            if out is None:
                out = {"error": f"unknown command {cmd}"}
        except Exception as exc:  # report, keep serving: the test decides what is fatal
            out = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
