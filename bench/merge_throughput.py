"""Merge throughput of two 100K-pattern states, side by side with Flower's weighted FedAvg.

Two agents with distinct origins each hold `--patterns` patterns over overlapping
keys (a grid of states x actions; the second agent's grid is shifted by
`--overlap`). Replica A merges B's serialized state. Timed separately:

- parse: inflate + validate + decode B's bytes into columns;
- merge: the CRDT join of the decoded columns into A's table;
- parse+merge: `merge_peer_state` end to end;
- aggregate: the swarm value (visit-weighted mean q) of every distinct pattern afterwards,
  as arrays (numpy kernel) or Python lists (pure kernel);
- merge+aggregate: both, i.e. from decoded columns to every pattern's swarm value:
  the counterpart of "fedavg_per_key+alignment" below.

"patterns merged/s" counts the entries of both states (2 x patterns) per second,
the same count Flower gets. Flower's side (`flwr.server.strategy.aggregate.aggregate`)
gets the same q-values laid out as dense arrays over the union of keys (0 where a
client has no pattern): FedAvg weights a client by a scalar, so "fedavg" weights
each client by its total visits, and "fedavg_per_key" passes [q*visits, visits]
layers with weight 1 and divides, which is the per-key visit weighting we compute;
"fedavg_per_key+alignment" starts from the two clients' sparse (key, q, visits)
columns and builds that dense layout first (key union + scatter), which is what
aggregating pattern tables with FedAvg takes when clients learned different keys.
Flower is not a dependency of the package: without it those lines are skipped.

Prints JSON lines; bounded: fixed sizes, best of `--rounds`.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ruvector_edge.intelligence import IntelligenceSync, Limits, NumpyTable, PyTable, wire
from ruvector_edge.platform.base import FakeClock


def build_state(origin: str, first_state: int, n_states: int, n_actions: int, seed: int) -> bytes:
    """A canonical state of one origin, made through the public API and serialized once."""
    rng = np.random.default_rng(seed)
    agent = IntelligenceSync(origin, clock=FakeClock(), table_factory=lambda: NumpyTable(np))
    q = rng.normal(size=n_states * n_actions).tolist()
    visits = rng.integers(1, 50, size=n_states * n_actions).tolist()
    i = 0
    for s in range(first_state, first_state + n_states):
        for a in range(n_actions):
            agent.set_pattern(f"state-{s:07d}", f"action-{a:02d}", q[i], visits[i])
            i += 1
    return agent.serialize_state()


def best(run, rounds: int, setup=None) -> float:
    times = []
    for _ in range(rounds):
        arg = setup() if setup else None
        start = time.perf_counter()
        run(arg)
        times.append(time.perf_counter() - start)
    return min(times)


def replica(data: bytes, factory) -> IntelligenceSync:
    agent = IntelligenceSync("agent-a", clock=FakeClock(), table_factory=factory)
    agent.merge_peer_state("agent-a", data)
    return agent


def ours(kernel: str, factory, a_bytes: bytes, b_bytes: bytes, patterns: int, rounds: int) -> list[dict]:
    limits = Limits()

    def parse(_):
        raw = wire.inflate(b_bytes, limits)
        lay = wire.parse_layout(raw, limits)
        return factory().decode(raw, lay, wire.parse_strings(raw, lay, limits))

    parse_s = best(parse, rounds)
    decoded = parse(None)
    merge_s = best(lambda agent: agent._table.merge(decoded, limits), rounds, lambda: replica(a_bytes, factory))
    both_s = best(lambda agent: agent.merge_peer_state("agent-b", b_bytes), rounds, lambda: replica(a_bytes, factory))
    merged = replica(a_bytes, factory)
    result = merged.merge_peer_state("agent-b", b_bytes)
    table = merged._table
    agg_s = best(lambda _: getattr(table, "swarm_arrays", table.aggregate)(), rounds)

    def merge_then_aggregate(agent):
        agent._table.merge(decoded, limits)
        getattr(agent._table, "swarm_arrays", agent._table.aggregate)()

    merge_agg_s = best(merge_then_aggregate, rounds, lambda: replica(a_bytes, factory))
    total = 2 * patterns
    rows = []
    for step, seconds in (("parse", parse_s), ("merge", merge_s), ("parse+merge", both_s), ("aggregate", agg_s),
                          ("merge+aggregate", merge_agg_s)):
        rows.append(
            {
                "bench": "merge_throughput",
                "impl": f"ruvector_edge[{kernel}]",
                "step": step,
                "patterns_per_state": patterns,
                "seconds": round(seconds, 6),
                "patterns_merged_per_s": round(total / seconds),
                "incoming_entries_per_s": round(patterns / seconds),
            }
        )
    rows[-2]["distinct_patterns"] = merged.get_swarm_stats().total_patterns
    rows[-2]["merge_result"] = result.__dict__
    rows[-2]["state_bytes"] = len(b_bytes)
    return rows


def flower(a_bytes: bytes, b_bytes: bytes, patterns: int, rounds: int) -> list[dict]:
    try:
        import flwr
        from flwr.server.strategy.aggregate import aggregate
    except ImportError as exc:
        return [{"bench": "merge_throughput", "impl": "flwr", "skipped": f"flwr not importable: {exc}"}]
    merged = replica(a_bytes, lambda: NumpyTable(np))
    merged.merge_peer_state("agent-b", b_bytes)
    table = merged._table
    keys = table._key >> wire.ID_BITS
    union, slot = np.unique(keys, return_inverse=True)
    mask_a = (table._key & ((1 << wire.ID_BITS) - 1)) == table._ids["agent-a"]
    q = {k: np.zeros(len(union)) for k in "ab"}
    v = {k: np.zeros(len(union)) for k in "ab"}
    q["a"][slot[mask_a]] = table._q[mask_a]
    v["a"][slot[mask_a]] = table._visits[mask_a]
    q["b"][slot[~mask_a]] = table._q[~mask_a]
    v["b"][slot[~mask_a]] = table._visits[~mask_a]
    client = [([q[k]], int(v[k].sum())) for k in "ab"]
    per_key = [([q[k] * v[k], v[k]], 1) for k in "ab"]

    def fedavg_per_key(_):
        weighted, visits = aggregate(per_key)
        return np.divide(weighted, visits, out=np.zeros_like(weighted), where=visits > 0)

    # The same per-key FedAvg when the clients hold sparse (key, q, visits) tables, as agents do:
    # the dense layout Flower needs is built from the keys first (union, then scatter).
    sparse = [(keys[m], table._q[m], table._visits[m].astype(np.float64)) for m in (mask_a, ~mask_a)]

    def fedavg_per_key_aligned(_):
        union_keys, slots = np.unique(np.concatenate([k for k, _, _ in sparse]), return_inverse=True)
        layers, start = [], 0
        for k, qv, vv in sparse:
            at, start = slots[start : start + len(k)], start + len(k)
            dq, dv = np.zeros(len(union_keys)), np.zeros(len(union_keys))
            dq[at], dv[at] = qv * vv, vv
            layers.append(([dq, dv], 1))
        weighted, visits = aggregate(layers)
        return np.divide(weighted, visits, out=np.zeros_like(weighted), where=visits > 0)

    total = 2 * patterns
    rows = []
    steps = (("fedavg", lambda _: aggregate(client)), ("fedavg_per_key", fedavg_per_key),
             ("fedavg_per_key+alignment", fedavg_per_key_aligned))
    for step, run in steps:
        seconds = best(run, rounds)
        rows.append(
            {
                "bench": "merge_throughput",
                "impl": f"flwr {flwr.__version__}",
                "step": step,
                "patterns_per_state": patterns,
                "dense_length": len(union),
                "seconds": round(seconds, 6),
                "patterns_merged_per_s": round(total / seconds),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patterns", type=int, default=100_000, help="patterns per state")
    parser.add_argument("--actions", type=int, default=8)
    parser.add_argument("--overlap", type=float, default=0.5, help="share of B's keys that A also has")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pure", action="store_true", help="also time the pure-Python kernel (slow)")
    args = parser.parse_args()
    n_states = args.patterns // args.actions
    patterns = n_states * args.actions
    shift = round(n_states * (1 - args.overlap))
    a_bytes = build_state("agent-a", 0, n_states, args.actions, seed=1)
    b_bytes = build_state("agent-b", shift, n_states, args.actions, seed=2)
    rows = ours("numpy", lambda: NumpyTable(np), a_bytes, b_bytes, patterns, args.rounds)
    if args.pure:
        rows += ours("pure", PyTable, a_bytes, b_bytes, patterns, max(1, args.rounds // 2))
    rows += flower(a_bytes, b_bytes, patterns, args.rounds)
    ref = {r["step"]: r["patterns_merged_per_s"] for r in rows if r.get("impl", "").startswith("flwr") and "step" in r}
    for row in rows:
        if row["impl"] == "ruvector_edge[numpy]" and ref:
            row["vs_flwr_fedavg"] = round(row["patterns_merged_per_s"] / ref["fedavg"], 3)
            row["vs_flwr_fedavg_per_key"] = round(row["patterns_merged_per_s"] / ref["fedavg_per_key"], 3)
            row["vs_flwr_fedavg_per_key_aligned"] = round(row["patterns_merged_per_s"] / ref["fedavg_per_key+alignment"], 3)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
