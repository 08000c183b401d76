"""Relays federated over NATS: one swarm across many relays (issue 16).

`subjects` names everything on the bus, `backplane` decides what a relay publishes, subscribes,
replays and believes about presence (sans-I/O, tested with a fake bus), and `nats_bus` is the thin
nats-py shell that carries those decisions out.
"""
