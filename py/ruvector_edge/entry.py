"""Console-script entry points around `cli`: a missing dependency is one line, not a traceback.

A plain `pip install ruvector-edge` brings every native dependency, but an environment can
still lack one (installed with --no-deps, a package removed later, an optional extra such as
`[embeddings]`). Whoever runs `edge-relay` then needs to know what to install, so only an
import of a third-party module or a `ProviderUnavailable` is turned into that line; any
other error, and a missing module of our own package, still shows its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable

from .errors import ProviderUnavailable

# Import name → the distribution pip installs it from, where the two differ.
PIP_NAMES = {"nacl": "pynacl", "zlib_ng": "zlib-ng", "yaml": "pyyaml"}


def missing_dependency_message(prog: str, exc: BaseException) -> str | None:
    """The one line to print for `exc`, or None when it is not a missing dependency."""
    if isinstance(exc, ProviderUnavailable):
        return f"{prog}: {exc}"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        if top == __package__:
            return None
        package = PIP_NAMES.get(top, top)
        return f"{prog}: the Python package '{package}' is missing: pip install {package}"
    return None


def _guarded(prog: str, target: str) -> Callable[[], int]:
    def main() -> int:
        try:
            from . import cli

            return getattr(cli, target)()
        except (ModuleNotFoundError, ProviderUnavailable) as exc:
            message = missing_dependency_message(prog, exc)
            if message is None:
                raise
            print(message, file=sys.stderr)
            return 1

    main.__name__ = target
    return main


relay = _guarded("edge-relay", "relay_main")
coordinator = _guarded("edge-coordinator", "coordinator_main")
agent = _guarded("edge-agent", "agent_main")
demo = _guarded("edge-demo", "demo_main")
