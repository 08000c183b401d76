"""Logging configured from the environment, the same way for every command.

`EDGE_LOG` sets the level (debug, info, warning, error); the spec's `RUST_LOG`
is accepted as an alias so existing deployment scripts keep working.
"""

from __future__ import annotations

import logging
import os

_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "warning": logging.WARNING, "error": logging.ERROR, "off": logging.CRITICAL + 1}


def configure_logging(default: str = "info") -> None:
    raw = os.environ.get("EDGE_LOG") or os.environ.get("RUST_LOG") or default
    # RUST_LOG may be "info" or "crate=debug,info"; take the last bare level we recognise.
    level = logging.INFO
    for part in raw.replace(" ", "").split(","):
        name = part.split("=")[-1].lower()
        if name in _LEVELS:
            level = _LEVELS[name]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
