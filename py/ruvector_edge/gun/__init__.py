"""A GUN-protocol peer: HAM graph with SQLite persistence, sans-I/O engine, aiohttp `/gun` route;
and GunSwarm, swarm state kept in GUN.

The engine side is imported lazily: the browser uses only GunSwarm (over GUN.js) and has
neither aiohttp nor sqlite3 loaded.
"""

from importlib import import_module

from .ham import ham, js_stringify  # (binds `ham` to the function, not the submodule)
from .swarm import GunSwarm, GunSwarmBuilder

_LAZY = {"add_gun_routes": "endpoint", "peer_with": "endpoint", "Graph": "graph", "GraphLimits": "graph",
         "GunEngine": "peer", "GunLimits": "peer", "SqliteGraphStore": "store", "WireLimits": "wire"}

__all__ = ["GunSwarm", "GunSwarmBuilder", "ham", "js_stringify", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
