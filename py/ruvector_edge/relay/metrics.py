"""Relay counters and the Prometheus text exposition of them."""

from __future__ import annotations

import bisect
import time
from typing import Callable, Mapping

from .. import __version__

RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class RelayMetrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.connections = 0
        self.connections_total = 0
        self.connections_pending = 0  # accepted on /ws, challenge not yet answered
        self.refused: dict[str, int] = {}  # connections turned away before the upgrade, by cap
        self.handshake_timeouts = 0
        self.head_timeouts = 0  # TCP connections closed for not sending a complete request head in time
        self.tcp_open: Callable[[], int] = lambda: 0  # TCP connections accepted and not yet closed
        self.frames_in = 0
        self.frames_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.drops: dict[str, int] = {}
        self.http_requests: dict[tuple[str, int], int] = {}
        self.rtt_counts = [0] * (len(RTT_BUCKETS) + 1)
        self.rtt_sum = 0.0
        self.queue_depths: Callable[[], tuple[int, int]] = lambda: (0, 0)
        self.gun_counts: Callable[[], dict[str, int]] = dict  # the /gun engine's counters, when served
        # When federated: the backplane's drops by reason, and the GUN bridge's (frames, drops by reason).
        self.federation_dropped: Callable[[], Mapping[str, int]] | None = None
        self.gun_bridge_counts: Callable[[], tuple[Mapping[str, int], Mapping[str, int]]] | None = None

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def count_http(self, kind: str, status: int) -> None:
        key = (kind, status)
        self.http_requests[key] = self.http_requests.get(key, 0) + 1

    def observe_rtt(self, seconds: float) -> None:
        self.rtt_counts[bisect.bisect_left(RTT_BUCKETS, seconds)] += 1
        self.rtt_sum += seconds

    def render(self) -> str:
        total_depth, max_depth = self.queue_depths()
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float | int]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                out.append(f"{name}{labels} {value}")

        metric("edge_relay_info", "gauge", "Relay build information.", [(f'{{version="{__version__}"}}', 1)])
        metric("edge_relay_uptime_seconds", "gauge", "Seconds since start.", [("", round(time.time() - self.started, 3))])
        metric("edge_relay_connections", "gauge", "Open WebSocket connections.", [("", self.connections)])
        metric("edge_relay_connections_total", "counter", "WebSocket connections accepted.", [("", self.connections_total)])
        metric("edge_relay_connections_pending", "gauge", "WebSocket connections that have not answered the challenge yet.",
               [("", self.connections_pending)])
        metric("edge_relay_connections_refused_total", "counter",
               "Connections refused before the upgrade, by cap (tcp_*: at accept, before any HTTP, closed unanswered).",
               [(f'{{reason="{reason}"}}', n) for reason, n in sorted(self.refused.items())])
        metric("edge_relay_handshake_timeouts_total", "counter", "Connections closed for not answering the challenge in time.",
               [("", self.handshake_timeouts)])
        metric("edge_relay_tcp_connections", "gauge", "TCP connections open, whatever they carry (HTTP, WebSocket, none yet).",
               [("", self.tcp_open())])
        metric("edge_relay_request_head_timeouts_total", "counter",
               "TCP connections closed for not sending a complete first request head in time.", [("", self.head_timeouts)])
        metric("edge_relay_frames_total", "counter", "Frames by direction.",
               [('{direction="in"}', self.frames_in), ('{direction="out"}', self.frames_out)])
        metric("edge_relay_bytes_total", "counter", "Frame bytes by direction.",
               [('{direction="in"}', self.bytes_in), ('{direction="out"}', self.bytes_out)])
        metric("edge_relay_drops_total", "counter", "Frames or connections dropped, by reason.",
               [(f'{{reason="{reason}"}}', n) for reason, n in sorted(self.drops.items())])
        metric("edge_relay_queue_depth", "gauge", "Outbound frames waiting, summed and worst connection.",
               [('{stat="total"}', total_depth), ('{stat="max"}', max_depth)])
        cumulative = 0
        buckets = []
        for bound, count in zip(RTT_BUCKETS, self.rtt_counts):
            cumulative += count
            buckets.append((f'_bucket{{le="{bound}"}}', cumulative))
        cumulative += self.rtt_counts[-1]
        buckets.append(('_bucket{le="+Inf"}', cumulative))
        out.append("# HELP edge_relay_rtt_seconds Relay-to-agent ping round trips.")
        out.append("# TYPE edge_relay_rtt_seconds histogram")
        for suffix, value in buckets:
            out.append(f"edge_relay_rtt_seconds{suffix} {value}")
        out.append(f"edge_relay_rtt_seconds_sum {round(self.rtt_sum, 6)}")
        out.append(f"edge_relay_rtt_seconds_count {cumulative}")
        gun = self.gun_counts()
        if gun:
            metric("edge_relay_gun", "gauge", "GUN endpoint counters (messages, puts, gets, relayed, malformed, ...).",
                   [(f'{{what="{name}"}}', value) for name, value in sorted(gun.items())
                    if isinstance(value, int) and not isinstance(value, bool)])
        if self.federation_dropped is not None:
            metric("edge_relay_federation_dropped_total", "counter", "Swarm frames the federation backplane dropped, by reason.",
                   [(f'{{reason="{reason}"}}', n) for reason, n in sorted(self.federation_dropped().items())])
        if self.gun_bridge_counts is not None:
            frames, dropped = self.gun_bridge_counts()
            metric("edge_relay_gun_bridge_frames_total", "counter",
                   "GUN frames between relays over NATS: published, received, duplicates (messages the graph had), "
                   "replies_kept (engine answers not published).",
                   [(f'{{what="{name}"}}', n) for name, n in sorted(frames.items())])
            metric("edge_relay_gun_bridge_dropped_total", "counter", "GUN frames between relays dropped, by reason.",
                   [(f'{{reason="{reason}"}}', n) for reason, n in sorted(dropped.items())])
        metric("edge_relay_http_requests_total", "counter", "HTTP requests by kind and status.",
               [(f'{{kind="{k}",status="{s}"}}', n) for (k, s), n in sorted(self.http_requests.items())])
        return "\n".join(out) + "\n"
