"""relay/tcp_gate.py: open TCP connections counted per source address and in all (no sockets)."""

from __future__ import annotations

import random

from ruvector_edge.relay.tcp_gate import PER_ADDRESS, TOTAL, TcpGate


def test_an_address_past_its_cap_is_refused_while_others_are_admitted():
    gate = TcpGate(per_address=3, total=10)
    assert [gate.open("a") for _ in range(4)] == [None, None, None, PER_ADDRESS]
    assert gate.open("b") is None
    assert gate.open_count == 4  # the refused one is not counted


def test_all_addresses_together_are_capped():
    gate = TcpGate(per_address=3, total=4)
    assert [gate.open(address) for address in "aabbc"] == [None, None, None, None, TOTAL]
    gate.close("a")
    assert gate.open("c") is None


def test_a_closed_connection_frees_its_slot_and_an_address_gone_quiet_is_forgotten():
    gate = TcpGate(per_address=2, total=10)
    gate.open("a")
    gate.open("a")
    assert gate.open("a") == PER_ADDRESS
    gate.close("a")
    assert gate.open("a") is None
    gate.close("a")
    gate.close("a")
    assert gate.open_count == 0 and gate._open == {}


def test_random_opens_and_closes_match_a_model():
    rng = random.Random(17)
    gate = TcpGate(per_address=4, total=9)
    held: list[str] = []
    for _ in range(5000):
        if held and rng.random() < 0.45:
            gate.close(held.pop(rng.randrange(len(held))))
            continue
        address = rng.choice("abcde")
        expected = PER_ADDRESS if held.count(address) >= 4 else TOTAL if len(held) >= 9 else None
        assert gate.open(address) == expected
        if expected is None:
            held.append(address)
        assert gate.open_count == len(held)
