"""Cost of reading the swarm's patterns (the robust value of intelligence/robust.py) on many-origin tables.

`--origins` origins each report a random `--coverage` share of a states x actions
grid (so pairs have from one to all origins, and trimming and caps apply), merged
into one replica. Timed, best of `--rounds`:

- aggregate: every pair's swarm value as arrays (numpy kernel) or lists (pure kernel);
- aggregate_after_write: the same right after one local write (the numpy kernel keeps
  its robust per-pair values until the table changes, so this is the read that pays);
- patterns: `IntelligenceSync.patterns()` (the value objects the page shows);
- best_action: `best_action` over every state, one call each (the per-decision read).

Only public reads, so the same script run against an older tree (PYTHONPATH) gives
the cost of the reads it replaced. Prints JSON lines; fixed seed and sizes.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ruvector_edge.intelligence import IntelligenceSync, NumpyTable, PyTable
from ruvector_edge.platform.base import FakeClock


def swarm(origins: int, states: int, actions: int, coverage: float, factory, seed: int) -> IntelligenceSync:
    rng = np.random.default_rng(seed)
    sink = IntelligenceSync("reader", clock=FakeClock(), table_factory=factory)
    for o in range(origins):
        agent = IntelligenceSync(f"origin-{o:03d}", clock=FakeClock(), table_factory=lambda: NumpyTable(np))
        cells = np.flatnonzero(rng.random(states * actions) < coverage)
        for cell, q, v in zip(cells.tolist(), rng.normal(size=len(cells)).tolist(), rng.integers(1, 50, len(cells)).tolist()):
            agent.set_pattern(f"state-{cell // actions:06d}", f"action-{cell % actions:02d}", q, v)
        sink.merge_peer_state(agent.agent_id, agent.serialize_state())
    return sink


def best(run, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--states", type=int, default=5_000)
    parser.add_argument("--actions", type=int, default=8)
    parser.add_argument("--coverage", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pure", action="store_true", help="also time the pure-Python kernel (slow)")
    args = parser.parse_args()
    kernels = [("numpy", lambda: NumpyTable(np))] + ([("pure", PyTable)] if args.pure else [])
    action_names = [f"action-{a:02d}" for a in range(args.actions)]
    for origins in (8, 31):
        for kernel, factory in kernels:
            sync = swarm(origins, args.states, args.actions, args.coverage, factory, seed=origins)
            table = sync._table
            read = getattr(table, "swarm_arrays", table.aggregate)
            state_names = [f"state-{s:06d}" for s in range(args.states)]
            def write_then_read() -> None:
                sync.update_pattern("state-000000", "action-00", 0.0)
                read()

            rows = {
                "aggregate": best(read, args.rounds),
                "aggregate_after_write": best(write_then_read, args.rounds),
                "patterns": best(sync.patterns, args.rounds),
                "best_action": best(lambda: [sync.best_action(s, action_names) for s in state_names], max(1, args.rounds // 2)),
            }
            for step, seconds in rows.items():
                print(json.dumps({
                    "bench": "robust_read", "impl": f"ruvector_edge[{kernel}]", "step": step, "origins": origins,
                    "entries": len(sync), "distinct_patterns": sync.get_swarm_stats().total_patterns,
                    "seconds": round(seconds, 6),
                }), flush=True)


if __name__ == "__main__":
    main()
