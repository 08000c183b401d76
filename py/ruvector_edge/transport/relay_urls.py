"""Relay URL lists: how `--coordinator`, `SWARM_COORDINATOR` and a page's invite name the relays of a federation.

One comma-separated string, so several relays fit wherever one URL did (a CLI flag, an environment
variable, a URL fragment); each URL is completed with the relay's `/ws` path, so `ws://host:port`
works as it does for one relay. Shared by the native and the browser links, so both read a list the
same way."""

from __future__ import annotations

from typing import Iterable

from ..errors import InvalidRelayUrl

WEBSOCKET_SCHEMES = ("ws://", "wss://")


def relay_urls(urls: str | Iterable[str]) -> list[str]:
    """Each relay URL of `urls` (comma-separated, or already a list), completed with /ws when it is missing."""
    parts = urls.split(",") if isinstance(urls, str) else urls
    out = []
    for url in (u.strip().rstrip("/") for u in parts):
        if url:
            out.append(url if url.endswith("/ws") else url + "/ws")
    return out


def websocket_relay_urls(urls: str | Iterable[str]) -> list[str]:
    """`relay_urls` for a browser, which can only open ws:// and wss://; InvalidRelayUrl for anything else
    or for an empty list, before a link starts."""
    out = relay_urls(urls)
    if not out:
        raise InvalidRelayUrl("no relay URL given")
    for url in out:
        if not url.startswith(WEBSOCKET_SCHEMES) or len(url) > 2048:
            raise InvalidRelayUrl(f"unsupported relay URL {url[:100]!r}: use ws://host:port[/ws] or wss://…")
    return out
