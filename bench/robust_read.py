"""Cost of reading the swarm's patterns (the robust value of intelligence/robust.py) on many-origin tables.

`--origins` origins each report a random `--coverage` share of a states x actions
grid (so pairs have from one to all origins, and trimming and caps apply), merged
into one replica. Timed, best of `--rounds`:

- aggregate: every pair's swarm value as arrays (numpy kernel) or lists (pure kernel);
- aggregate_after_write: the same right after one local write (the numpy kernel keeps
  its robust per-pair values and recomputes only the pairs a change touched);
- aggregate_after_delta: the same right after merging one origin's delta that rewrote
  `--delta-share` of its entries (the gossip case: a merge, then a read);
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


def swarm(origins: int, states: int, actions: int, coverage: float, factory, seed: int):
    """The reader's replica and the first origin (whose later deltas the reader merges)."""
    rng = np.random.default_rng(seed)
    sink = IntelligenceSync("reader", clock=FakeClock(), table_factory=factory)
    first = None
    for o in range(origins):
        agent = IntelligenceSync(f"origin-{o:03d}", clock=FakeClock(), table_factory=lambda: NumpyTable(np))
        cells = np.flatnonzero(rng.random(states * actions) < coverage)
        for cell, q, v in zip(cells.tolist(), rng.normal(size=len(cells)).tolist(), rng.integers(1, 50, len(cells)).tolist()):
            agent.set_pattern(f"state-{cell // actions:06d}", f"action-{cell % actions:02d}", q, v)
        sink.merge_peer_state(agent.agent_id, agent.serialize_state())
        first = first or agent
    return sink, first


def best(run, rounds: int, setup=lambda: None) -> float:
    times = []
    for _ in range(rounds):
        arg = setup()
        start = time.perf_counter()
        run(arg)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--states", type=int, default=5_000)
    parser.add_argument("--actions", type=int, default=8)
    parser.add_argument("--coverage", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--delta-share", type=float, default=0.05, help="share of one origin's entries a delta rewrites")
    parser.add_argument("--pure", action="store_true", help="also time the pure-Python kernel (slow)")
    args = parser.parse_args()
    kernels = [("numpy", lambda: NumpyTable(np))] + ([("pure", PyTable)] if args.pure else [])
    action_names = [f"action-{a:02d}" for a in range(args.actions)]
    for origins in (8, 31):
        for kernel, factory in kernels:
            sync, origin = swarm(origins, args.states, args.actions, args.coverage, factory, seed=origins)
            table = sync._table
            read = getattr(table, "swarm_arrays", table.aggregate)
            state_names = [f"state-{s:06d}" for s in range(args.states)]
            rng = np.random.default_rng(origins)

            def write_then_read(_) -> None:
                sync.update_pattern("state-000000", "action-00", 0.0)
                read()

            def delta() -> bytes:
                rewritten = [p for p in origin.patterns() if rng.random() < args.delta_share]
                for p in rewritten:
                    origin.set_pattern(p.state, p.action, p.q_value + 0.1, p.visits)
                return origin.delta_for(sync.version_vector())

            def merge_then_read(data: bytes) -> None:
                sync.merge_peer_state(origin.agent_id, data)
                read()

            rows = {
                "aggregate": best(lambda _: read(), args.rounds),
                "aggregate_after_write": best(write_then_read, args.rounds),
                "aggregate_after_delta": best(merge_then_read, args.rounds, delta),
                "patterns": best(lambda _: sync.patterns(), args.rounds),
                "best_action": best(lambda _: [sync.best_action(s, action_names) for s in state_names], max(1, args.rounds // 2)),
            }
            for step, seconds in rows.items():
                print(json.dumps({
                    "bench": "robust_read", "impl": f"ruvector_edge[{kernel}]", "step": step, "origins": origins,
                    "entries": len(sync), "distinct_patterns": sync.get_swarm_stats().total_patterns,
                    "seconds": round(seconds, 6),
                }), flush=True)


if __name__ == "__main__":
    main()
