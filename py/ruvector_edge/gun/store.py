"""SQLite persistence of the GUN graph (stdlib sqlite3).

One row per (soul, key): the HAM state and the value as JSON text. Souls and keys
are stored as ASCII JSON strings, so any text (control characters, lone
surrogates, quotes) round-trips safely. Deferred (future-state) updates are kept
in their own table and re-queued on load.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gun_node (soul TEXT NOT NULL, key TEXT NOT NULL, state REAL NOT NULL,
                                     value TEXT NOT NULL, PRIMARY KEY (soul, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gun_deferred (soul TEXT NOT NULL, key TEXT NOT NULL, state REAL NOT NULL,
                                         value TEXT NOT NULL, PRIMARY KEY (soul, key, state, value));
"""


def _enc(s) -> str:
    return json.dumps(s, ensure_ascii=True, separators=(",", ":"))


class SqliteGraphStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()

    def load(self) -> Iterator[tuple[str, str, float, object]]:
        for soul, key, state, value in self._db.execute("SELECT soul, key, state, value FROM gun_node"):
            yield json.loads(soul), json.loads(key), state, json.loads(value)

    def load_deferred(self) -> Iterator[tuple[str, str, float, object]]:
        for soul, key, state, value in self._db.execute("SELECT soul, key, state, value FROM gun_deferred"):
            yield json.loads(soul), json.loads(key), state, json.loads(value)

    def write(self, rows: Iterable[tuple[str, str, float, object]]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO gun_node VALUES (?, ?, ?, ?)",
                             [(_enc(s), _enc(k), st, _enc(v)) for s, k, st, v in rows])

    def add_deferred(self, soul: str, key: str, state: float, value) -> None:
        self._db.execute("INSERT OR REPLACE INTO gun_deferred VALUES (?, ?, ?, ?)",
                         (_enc(soul), _enc(key), state, _enc(value)))

    def remove_deferred(self, soul: str, key: str, state: float, value) -> None:
        self._db.execute("DELETE FROM gun_deferred WHERE soul = ? AND key = ? AND state = ? AND value = ?",
                         (_enc(soul), _enc(key), state, _enc(value)))

    def commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        self._db.commit()
        self._db.close()
