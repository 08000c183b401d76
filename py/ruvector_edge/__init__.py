"""ruvector-edge: swarms of learning agents that run in browser tabs and on small native nodes.

The same pure-Python package runs under CPython (native providers) and Pyodide
(WebCrypto and JS bridges); runtime differences live behind `ruvector_edge.platform`.
"""

__version__ = "0.1.0"
