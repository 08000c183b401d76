"""A GUN-protocol peer: HAM graph with SQLite persistence, sans-I/O engine, aiohttp `/gun` route."""

from .endpoint import add_gun_routes, peer_with
from .graph import Graph, GraphLimits
from .ham import js_stringify, ham
from .peer import GunEngine, GunLimits
from .store import SqliteGraphStore
from .swarm import GunSwarm, GunSwarmBuilder
from .wire import WireLimits

__all__ = ["add_gun_routes", "peer_with", "Graph", "GraphLimits", "GunEngine", "GunLimits", "GunSwarm", "GunSwarmBuilder", "SqliteGraphStore",
           "WireLimits", "ham", "js_stringify"]
