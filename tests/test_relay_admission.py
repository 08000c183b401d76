"""ConnectionGate without sockets: remote addresses are plain strings, so several hosts can be played by one test."""

from __future__ import annotations

from ruvector_edge.relay.admission import ConnectionGate
from ruvector_edge.relay.metrics import RelayMetrics
from ruvector_edge.relay.router import RelayLimits


def make_gate(**limits) -> ConnectionGate:
    return ConnectionGate(RelayLimits(**limits), RelayMetrics())


def test_one_address_cannot_take_every_handshake_slot():
    gate = make_gate(max_pending=5, max_pending_per_address=3, max_connections_per_address=100)
    flood = [gate.admit("10.0.0.66", handshake=True) for _ in range(5)]
    assert [t is not None for t in flood] == [True, True, True, False, False]
    honest = [gate.admit(f"10.0.1.{i}", handshake=True) for i in range(2)]
    assert all(honest), "other hosts still get the slots the flooding host could not take"
    assert gate.admit("10.0.1.9", handshake=True) is None  # the total is reached
    assert gate.metrics.refused == {"pending_per_address": 2, "pending": 1}
    assert gate.metrics.connections_pending == 5


def test_a_finished_handshake_frees_its_slot_but_keeps_the_connection_counted():
    gate = make_gate(max_pending=2, max_pending_per_address=2, max_connections_per_address=3)
    first, second = gate.admit("a", handshake=True), gate.admit("a", handshake=True)
    assert gate.admit("a", handshake=True) is None
    first.handshake_done()
    first.handshake_done()  # idempotent
    assert gate.metrics.connections_pending == 1
    third = gate.admit("a", handshake=True)
    assert third is not None
    assert gate.admit("a", handshake=False) is None  # three connections from "a" are its cap
    assert gate.metrics.refused == {"pending": 1, "per_address": 1}
    for ticket in (first, second, third, first):
        ticket.release()
    assert gate.metrics.connections_pending == 0
    assert gate._open == {} and gate._pending == {}, "addresses that went away must not stay in the tables"


def test_connections_without_a_handshake_take_no_handshake_slot():
    gate = make_gate(max_pending=1, max_pending_per_address=1, max_connections_per_address=4)
    gun = [gate.admit("a", handshake=False) for _ in range(3)]
    assert all(gun) and gate.metrics.connections_pending == 0
    assert gate.admit("a", handshake=True) is not None
    assert gate.admit("a", handshake=False) is None
