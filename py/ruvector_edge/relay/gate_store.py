"""SQLite file of the records the relay's gatekeeper holds for admitted swarms (DATA-DIR/gate.sqlite).

Why a file at all: the relay is where a member offline during a rekey finds its new key, and where a removed
member's still-unexpired certificate is refused when the admin is not online to say so. Lost on a restart,
both would wait for the admin to come back. The records are the admin's signed ones, kept as they arrived
(canonical JSON), one row per (swarm, kind, agent): the gatekeeper re-verifies each on load, as it did on the
wire, so the file is trusted no more than a frame.

Every write is one transaction, committed before the gatekeeper returns (and so before the relay acknowledges
the change). Rows moot by their `moot_after` time (an expired certificate, a revocation of one) are purged in
the same transaction as the next write to their swarm. The file holds at most `max_swarms` swarms; per swarm,
the gatekeeper's own bounds apply, since the file only mirrors what it holds. When a new swarm finds the file
full (no swarm moot), the swarm written least recently is dropped from the file, not the newcomer refused:
anyone can found swarms, so refusing would let a stranger's 10,000 self-made swarms shut every later admitted
swarm out of the relay, across restarts; dropping only makes an idle swarm's state after a restart what it was
before the relay kept a file (its admin sends it again on joining).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

log = logging.getLogger(__name__)

CERTIFICATE, REVOCATION, EPOCH_KEY = "certificate", "revocation", "epoch-key"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gate_record (swarm TEXT NOT NULL, kind TEXT NOT NULL, agent TEXT NOT NULL,
                                        moot_after INTEGER NOT NULL, body TEXT NOT NULL,
                                        PRIMARY KEY (swarm, kind, agent)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gate_swarm (swarm TEXT PRIMARY KEY, written INTEGER NOT NULL) WITHOUT ROWID;
"""


class Row(NamedTuple):
    swarm: str
    kind: str
    agent: str
    moot_after: int
    body: str


class GateStore:
    def __init__(self, path: str | Path, max_swarms: int) -> None:
        """Open (or make, 0600) the file; raise OSError or sqlite3.Error when it cannot be, as the GUN store."""
        self.path = Path(path)
        self.max_swarms = max_swarms
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)  # the admins' records decide who the relay admits: nobody else writes them
        self._db = sqlite3.connect(str(self.path), isolation_level=None)
        self._db.executescript(_SCHEMA)
        self._swarms = {swarm for (swarm,) in self._db.execute("SELECT DISTINCT swarm FROM gate_record")}

    def rows(self) -> Iterator[Row]:
        """Every row, grouped by swarm, certificates first (revocations undo them, epoch keys need both)."""
        return map(Row._make, self._db.execute(
            "SELECT swarm, kind, agent, moot_after, body FROM gate_record ORDER BY swarm, "
            f"CASE kind WHEN '{CERTIFICATE}' THEN 0 WHEN '{REVOCATION}' THEN 1 ELSE 2 END, agent"))

    def holds(self, swarm: str) -> bool:
        return swarm in self._swarms

    def check_room(self, swarm: str, now: int) -> None:
        """Make room for `swarm` if it has no rows yet and the file is full: forget the swarms whose every row is
        moot, then, if still full, the swarm written least recently. Called before the gatekeeper changes anything."""
        if swarm in self._swarms or len(self._swarms) < self.max_swarms:
            return

        def make_room(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM gate_record WHERE swarm IN (SELECT swarm FROM gate_record GROUP BY swarm "
                       "HAVING MAX(moot_after) <= ?)", (now,))
            held = db.execute("SELECT COUNT(DISTINCT swarm) FROM gate_record").fetchone()[0]
            if held >= self.max_swarms:
                oldest = db.execute(  # a swarm with rows but no write time (an older file) counts as oldest
                    "SELECT r.swarm FROM (SELECT DISTINCT swarm FROM gate_record) r LEFT JOIN gate_swarm w "
                    "ON w.swarm = r.swarm ORDER BY COALESCE(w.written, -1), r.swarm LIMIT ?",
                    (held - self.max_swarms + 1,)).fetchall()
                log.warning("gate state: %d swarm(s) kept, the limit; dropping the least recently written from the "
                            "file to admit another", held)
                db.executemany("DELETE FROM gate_record WHERE swarm = ?", oldest)
            db.execute("DELETE FROM gate_swarm WHERE swarm NOT IN (SELECT DISTINCT swarm FROM gate_record)")

        self._write(make_room)
        self._swarms = {s for (s,) in self._db.execute("SELECT DISTINCT swarm FROM gate_record")}

    def write(self, swarm: str, now: int, put: Iterable[tuple[str, str, int, str]] = (),
              delete: Iterable[tuple[str, str]] = ()) -> None:
        """In one transaction: upsert (kind, agent, moot_after, body) rows, delete (kind, agent) rows, and purge
        the swarm's moot rows."""
        put, delete = list(put), list(delete)

        def change(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM gate_record WHERE swarm = ? AND kind = ? AND agent = ?",
                           [(swarm, kind, agent) for kind, agent in delete])
            db.executemany("INSERT OR REPLACE INTO gate_record VALUES (?, ?, ?, ?, ?)",
                           [(swarm, kind, agent, moot, body) for kind, agent, moot, body in put])
            db.execute("DELETE FROM gate_record WHERE swarm = ? AND moot_after <= ?", (swarm, now))
            if put:
                db.execute("INSERT OR REPLACE INTO gate_swarm VALUES (?, ?)", (swarm, now))

        self._write(change)
        if put:
            self._swarms.add(swarm)

    def _write(self, change) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            change(self._db)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
