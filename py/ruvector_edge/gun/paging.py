"""Cut a put graph into pages that GUN.js in Node reads whole (no I/O).

GUN.js in Node parses incoming frames with lib/yson.js, 32,768 characters a step, and forgets the key it
has just read when a step ends between that key and its value; its put handler then stops at that key with
"no state" and drops every key after it (one 2,000-key frame lost ~420 keys). So every frame we send that
carries data (GET answers, forwarded puts) stays under a page budget well below that step; one key larger
than the budget goes alone.
"""

from __future__ import annotations

from .wire import encode

_COMMA = 1


def _soul_cost(soul: str) -> int:
    """Characters of `"soul":{"_":{"#":"soul",">":{}}}` plus the comma before it."""
    return len(encode({soul: {"_": {"#": soul, ">": {}}}})) - 2 + _COMMA


def _key_cost(key: str, value, state) -> int:
    """Characters one key adds: `"key":state` in ">" and `"key":value` in the node, colons and commas."""
    return 2 * len(encode(key)) + len(encode(value)) + len(encode(state)) + 4


def pages(graph: dict, budget: int, frame: int) -> list[dict]:
    """`graph` ({soul: {"_": {"#", ">"}, key: value}}) as a list of graphs whose frames are at most `budget`
    characters, given `frame` characters of envelope around an empty put graph ("{}"); keys keep their order.
    A graph that fits is returned as it is (its other meta fields kept)."""
    if frame + len(encode(graph)) - 2 <= budget:
        return [graph]
    out: list[dict] = [{}]
    size = frame
    for soul, node in graph.items():
        states = node["_"][">"]
        opened = False
        for key, value in node.items():
            if key == "_":
                continue
            cost = _key_cost(key, value, states[key]) + (0 if opened else _soul_cost(soul))
            if out[-1] and size + cost > budget:
                out.append({})
                size = frame
                opened = False
                cost = _key_cost(key, value, states[key]) + _soul_cost(soul)
            if not opened:
                out[-1][soul] = {"_": {"#": soul, ">": {}}}
                opened = True
            out[-1][soul]["_"][">"][key] = states[key]
            out[-1][soul][key] = value
            size += cost
        if not opened:  # a node with no keys: its soul alone
            cost = _soul_cost(soul)
            if out[-1] and size + cost > budget:
                out.append({})
                size = frame
            out[-1][soul] = {"_": {"#": soul, ">": {}}}
            size += cost
    return out
