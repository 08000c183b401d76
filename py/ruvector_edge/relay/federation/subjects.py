"""Where a swarm lives on NATS: subjects, the stream and the presence bucket, all from the swarm id.

Swarm ids and topics may contain '.', which NATS reads as a token separator, so both are hashed
(SHA-256, 128 bits, hex). A swarm's traffic is then under one prefix of its own and a relay never
subscribes outside the swarms its agents joined, so swarms never see each other's subjects:

    edge.s.<S>.t.<T>         a broadcast on topic T of swarm S          (relays with subscribers)
    edge.s.<S>.d.<A>.<R>     a direct frame for agent A, held by relay R (that relay only)
    edge.s.<S>.open          an empty first message, so every position an agent is sent is >= 1
    stream EDGE_<S>          captures edge.s.<S>.> : the swarm's recent frames, for catch-up
    bucket edge-presence-<S> a.<A>.<R> -> {"relay", "registration"};  r.<R> -> {"relay"} (heartbeat)

S = h("swarm", swarm id), T = h("topic", swarm id, topic), A = h("agent", swarm id, agent id):
the swarm id is mixed into T and A, so equal topic names in two swarms are unrelated subjects.
"""

from __future__ import annotations

import functools
import hashlib
import re

PREFIX = "edge.s"
_TOKEN = re.compile(r"[0-9a-f]{32}")
_RELAY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@functools.lru_cache(maxsize=16_384)  # every frame names its swarm and topic: hash each pair once, not per frame
def _h(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:32]


def swarm_token(swarm: str) -> str:
    return _h("swarm", swarm)


def topic_token(swarm: str, topic: str) -> str:
    return _h("topic", swarm, topic)


def agent_token(swarm: str, agent_id: str) -> str:
    return _h("agent", swarm, agent_id)


def check_relay_id(relay_id: str) -> str:
    """A relay id is one subject token and part of key names: letters, digits, '_' and '-'."""
    if not isinstance(relay_id, str) or not _RELAY_ID.fullmatch(relay_id):
        raise ValueError(f"relay id must be 1-64 of [A-Za-z0-9_-], got {relay_id!r:.80}")
    return relay_id


def topic_subject(swarm: str, topic: str) -> str:
    return f"{PREFIX}.{swarm_token(swarm)}.t.{topic_token(swarm, topic)}"


def direct_subject(swarm: str, agent_id: str, relay_id: str) -> str:
    return f"{PREFIX}.{swarm_token(swarm)}.d.{agent_token(swarm, agent_id)}.{relay_id}"


def inbox_subject(swarm: str, relay_id: str) -> str:
    """Every direct frame of this swarm for agents held by this relay: one subscription, not one per agent."""
    return f"{PREFIX}.{swarm_token(swarm)}.d.*.{relay_id}"


def opening_subject(swarm: str) -> str:
    """The stream's first message: a new stream's position is then 1, a sequence an agent can resume
    from (0 is "never had a position", and frames sent then would leave it nothing to pass on)."""
    return f"{PREFIX}.{swarm_token(swarm)}.open"


def swarm_subjects(swarm: str) -> str:
    return f"{PREFIX}.{swarm_token(swarm)}.>"


_STREAM_PREFIX = "EDGE_"
_BUCKET_PREFIX = "edge-presence-"


def stream_name(swarm: str) -> str:
    return f"{_STREAM_PREFIX}{swarm_token(swarm)}"


def presence_bucket(swarm: str) -> str:
    return f"{_BUCKET_PREFIX}{swarm_token(swarm)}"


def token_of_stream(stream: str) -> str:
    """The swarm token a stream name carries (the inverse of stream_name, for names it made)."""
    return stream.removeprefix(_STREAM_PREFIX)


def token_of_bucket(bucket: str) -> str:
    return bucket.removeprefix(_BUCKET_PREFIX)


def agent_key(swarm: str, agent_id: str, relay_id: str) -> str:
    """Keyed by agent *and* relay: a relay that forgets an agent deletes only its own entry, so an
    agent that already failed over to another relay is not removed by the one it left."""
    return f"a.{agent_token(swarm, agent_id)}.{relay_id}"


def relay_key(relay_id: str) -> str:
    return f"r.{relay_id}"


def parse_subject(subject: str) -> tuple[str, str, str | None] | None:
    """('t', T, None) or ('d', A, R) for a subject under edge.s.<S>; None for anything else."""
    parts = subject.split(".")
    if len(parts) == 5 and parts[:2] == ["edge", "s"] and parts[3] == "t" and _TOKEN.fullmatch(parts[4]):
        return "t", parts[4], None
    if len(parts) == 6 and parts[:2] == ["edge", "s"] and parts[3] == "d" and _TOKEN.fullmatch(parts[4]):
        return "d", parts[4], parts[5]
    return None


def parse_key(key: str) -> tuple[str, str | None, str] | None:
    """('a', A, R) or ('r', None, R) for a presence key; None for anything else."""
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "a" and _TOKEN.fullmatch(parts[1]) and _RELAY_ID.fullmatch(parts[2]):
        return "a", parts[1], parts[2]
    if len(parts) == 2 and parts[0] == "r" and _RELAY_ID.fullmatch(parts[1]):
        return "r", None, parts[1]
    return None
