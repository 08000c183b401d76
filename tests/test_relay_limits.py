"""RelayLimits (relay/router.py): a limit that would not bound anything is refused when the limits are made."""

from __future__ import annotations

import pytest

from ruvector_edge.errors import InvalidRelayLimits
from ruvector_edge.relay.router import RelayLimits


@pytest.mark.parametrize("name", ["request_head_timeout_s", "keepalive_timeout_s"])
@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, "10", None])
def test_a_deadline_must_be_a_positive_finite_number_of_seconds(name, value):
    with pytest.raises(InvalidRelayLimits, match=name):
        RelayLimits(**{name: value})


@pytest.mark.parametrize("name", ["max_tcp_per_address", "max_tcp_connections"])
@pytest.mark.parametrize("value", [0, -5, 1.5, True, "512", None])
def test_a_connection_cap_must_be_a_whole_number_of_at_least_one(name, value):
    with pytest.raises(InvalidRelayLimits, match=name):
        RelayLimits(**{name: value})


def test_the_defaults_and_small_valid_values_are_accepted():
    limits = RelayLimits()
    assert (limits.request_head_timeout_s, limits.keepalive_timeout_s) == (10.0, 30.0)
    assert (limits.max_tcp_per_address, limits.max_tcp_connections) == (512, 8192)
    small = RelayLimits(request_head_timeout_s=0.05, keepalive_timeout_s=1, max_tcp_per_address=1, max_tcp_connections=1)
    assert small.keepalive_timeout_s == 1
    assert issubclass(InvalidRelayLimits, ValueError)
