"""Command-line entry points: edge-relay, edge-coordinator, edge-agent and edge-demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from . import __version__
from .errors import AdminStateError, IdentityFileError, MemberStateError, MembershipRefused
from .logsetup import configure_logging

log = logging.getLogger("ruvector_edge")


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


DEFAULT_DATA_DIR = Path("edge-data")


def _add_store_options(parser: argparse.ArgumentParser, when: str = "") -> None:
    """A GUN relay is a store: its graph is kept on disk unless told otherwise."""
    store = parser.add_mutually_exclusive_group()
    store.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR",
                       help=f"{when}keep the relay's data (the GUN graph served on /gun, DIR/gun.sqlite; admitted swarms' "
                       "revocations, certificates and held epoch keys, DIR/gate.sqlite) in DIR "
                       f"(default: ./{DEFAULT_DATA_DIR}, created if missing; delete it to wipe the data)")
    store.add_argument("--memory-only", action="store_true",
                       help=f"{when}keep nothing on disk: the GUN graph and admission state are lost when the relay stops")


def _data_dir(args: argparse.Namespace) -> Path | None:
    return None if args.memory_only else args.data_dir


def _add_federation_options(parser: argparse.ArgumentParser) -> None:
    fed = parser.add_argument_group("federation (several relays, one swarm, over NATS)")
    fed.add_argument("--nats", default=os.environ.get("EDGE_NATS_URL") or None, metavar="URL[,URL]",
                     help="join this NATS system (nats:// or tls://, comma-separated; default EDGE_NATS_URL)")
    fed.add_argument("--nats-user", default=os.environ.get("EDGE_NATS_USER") or None, metavar="USER",
                     help="NATS user (default EDGE_NATS_USER); the password comes from EDGE_NATS_PASSWORD")
    fed.add_argument("--nats-nkey", default=None, metavar="SEEDFILE", help="authenticate with this nkey seed file")
    fed.add_argument("--nats-ca", default=None, metavar="PEM", help="CA that signed the NATS servers' certificates")
    fed.add_argument("--nats-cert", default=None, metavar="PEM", help="client certificate for NATS (mutual TLS)")
    fed.add_argument("--nats-key", default=None, metavar="PEM", help="key of --nats-cert")
    fed.add_argument("--relay-id", default=None, metavar="ID", help="this relay's name on the bus (default: random)")
    fed.add_argument("--nats-replicas", type=int, default=1, metavar="N",
                     help="replicas of each swarm's stream and presence bucket (3 on a 3-node cluster)")
    fed.add_argument("--stream-max-msgs", type=int, default=100_000, metavar="N", help="catch-up: frames kept per swarm")
    fed.add_argument("--stream-max-bytes", type=int, default=256 * 1024 * 1024, metavar="B", help="catch-up: bytes kept per swarm")
    fed.add_argument("--stream-max-age", type=float, default=3600.0, metavar="S", help="catch-up: seconds a frame is kept")


def _federation_from(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """(NatsOptions, FederationConfig) from the command line, or None without --nats."""
    if not args.nats:
        return None
    from .relay.federation.backplane import FederationConfig
    from .relay.federation.nats_bus import NatsOptions

    options = NatsOptions(tuple(u.strip() for u in args.nats.split(",") if u.strip()), user=args.nats_user,
                          password=os.environ.get("EDGE_NATS_PASSWORD") if args.nats_user else None,
                          nkey_seed_file=args.nats_nkey, tls_ca=args.nats_ca, tls_cert=args.nats_cert, tls_key=args.nats_key)
    try:
        config = FederationConfig(args.relay_id or f"relay-{os.urandom(4).hex()}", replicas=args.nats_replicas,
                                  stream_max_msgs=args.stream_max_msgs, stream_max_bytes=args.stream_max_bytes,
                                  stream_max_age_s=args.stream_max_age)
    except ValueError as exc:
        parser.error(str(exc))
    return options, config


def _open_relay(host: str, port: int, web_root: Path | None, shm_hub: str | None, data_dir: Path | None,
                federation=None):
    """A RelayServer keeping its GUN graph in DATA_DIR/gun.sqlite and its admission state in DATA_DIR/gate.sqlite
    (None: in memory), or None, logged, when a store cannot be made or opened (not a directory, unwritable, not a
    database). The directory is made only here, once the relay's dependencies are known to import, so a failed
    start leaves nothing behind."""
    import sqlite3

    from .relay.server import RelayServer

    try:
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        return RelayServer(host, port, web_root, shm_hub=shm_hub, gun_store=_gun_file(data_dir), federation=federation,
                           gate_store=None if data_dir is None else str(data_dir / "gate.sqlite"))
    except (OSError, sqlite3.Error) as exc:
        log.error("cannot keep the relay's data in %s: %s", data_dir, exc)
        return None


def _gun_file(data_dir: Path | None) -> str | None:
    return None if data_dir is None else str(data_dir / "gun.sqlite")


def relay_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edge-relay",
        description="Relay node: routes swarm frames (/ws) and serves the browser app, /healthz and /metrics on one port.",
        epilog="Log level: EDGE_LOG (or RUST_LOG) = debug|info|warning|error.",
    )
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8080), metavar="HOST:PORT",
                        help="address to listen on (default 127.0.0.1:8080)")
    parser.add_argument("--web", type=Path, default=None, metavar="DIR",
                        help="built web app to serve (default: ./dist if it exists)")
    parser.add_argument("--shm-hub", default=None, metavar="NAME",
                        help="also accept agents on this machine over shared memory (they join shm://NAME)")
    _add_store_options(parser)
    _add_federation_options(parser)
    parser.add_argument("--version", action="version", version=f"edge-relay {__version__}")
    args = parser.parse_args(argv)
    federation = _federation_from(args, parser)
    configure_logging()
    web_root = args.web if args.web is not None else (Path("dist") if Path("dist/index.html").exists() else None)
    if web_root is not None and not (web_root / "index.html").exists():
        parser.error(f"{web_root}/index.html not found; build the app first: bash scripts/build-web.sh")
    return asyncio.run(_serve_relay(*args.listen, web_root, args.shm_hub, _data_dir(args), federation))


async def _serve_relay(host: str, port: int, web_root: Path | None, shm_hub: str | None = None,
                       data_dir: Path | None = None, federation=None) -> int:
    stop = _stop_on_signals()
    server = _open_relay(host, port, web_root, shm_hub, data_dir, federation)
    if server is None:
        return 2
    try:
        await server.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        return 2
    except Exception as exc:  # nats-py's refusals (auth, TLS, no servers) share no base class with OSError
        if federation is None:
            raise
        log.error("cannot join NATS at %s: %s: %s", ",".join(federation[0].servers), type(exc).__name__, exc)
        await server.stop()
        return 2
    shown = f"[{host}]" if ":" in host else host
    port = server.port
    print(f"edge-relay {__version__} listening on http://{shown}:{port}/ (agents: ws://{shown}:{port}/ws, "
          f"GUN peers: http://{shown}:{port}/gun)", flush=True)
    if shm_hub:
        print(f"shared-memory hub: shm://{shm_hub}", flush=True)
    if federation is not None:
        print(f"federated over NATS {','.join(federation[0].servers)} as relay {federation[1].relay_id}", flush=True)
    print(f"GUN graph: {_gun_file(data_dir) or 'in memory only'}", flush=True)
    if web_root is None:
        print("no web app to serve (build it with: bash scripts/build-web.sh)", flush=True)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    return 0


def _invite_from(url: str | None) -> tuple[str | None, str | None]:
    """Split an admitted swarm's invite link `ws://host:port/ws#invite=TOKEN` into URL and invite token."""
    if url and "#" in url:
        base, fragment = url.split("#", 1)
        for part in fragment.split("&"):
            name, _, value = part.partition("=")
            if name == "invite" and value:
                return base, value
    return url, None


def _swarm_key_from(url: str | None, explicit: str | None) -> tuple[str | None, bytes | None]:
    """Split an open swarm's invite `ws://host:port/ws#swarm_key=HEX` into URL and key; --swarm-key / SWARM_KEY win."""
    key_hex = explicit or os.environ.get("SWARM_KEY")
    if url and "#" in url:
        url, fragment = url.split("#", 1)
        for part in fragment.split("&"):
            name, _, value = part.partition("=")
            if name == "swarm_key" and not key_hex:
                key_hex = value
    if not key_hex:
        return url, None
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        raise SystemExit("swarm key must be 64 hex characters") from None
    if len(key) != 32:
        raise SystemExit("swarm key must be 32 bytes (64 hex characters)")
    return url, key


def _agent_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Environment: SWARM_COORDINATOR (relay URL), SWARM_KEY (hex), SWARM_SYNC_INTERVAL (ms), "
        "EDGE_LOG or RUST_LOG (log level).",
    )
    parser.add_argument("--id", dest="agent_id", default=None, help="agent id (default: random)")
    parser.add_argument("--swarm-key", default=None, metavar="HEX", help="32-byte swarm key as hex")
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="leave after S seconds")
    parser.add_argument("--status-every", type=float, default=5.0, metavar="S", help="print the peer table every S seconds")
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    return parser


def coordinator_main(argv: list[str] | None = None) -> int:
    parser = _agent_parser("edge-coordinator", "Swarm coordinator; with --listen it also runs the relay agents connect to.")
    parser.add_argument("--transport", choices=["websocket"], default="websocket")
    parser.add_argument("--listen", type=parse_listen, default=None, metavar="HOST:PORT",
                        help="run an embedded relay on this address (e.g. 127.0.0.1:8080)")
    parser.add_argument("--relay", default=None, metavar="URL", help="join an existing relay instead (default: SWARM_COORDINATOR)")
    parser.add_argument("--web", type=Path, default=None, metavar="DIR", help="with --listen: also serve this built web app")
    parser.add_argument("--shm-hub", default=None, metavar="NAME",
                        help="with --listen: also accept local agents over shared memory (shm://NAME)")
    parser.description += (" Admitted (the default): its admin identity and state are kept in DIR/admin of --data-dir "
                           "(0600), so a restart keeps the swarm, its members, revocations and invites; --memory-only "
                           "founds a new swarm each run.")
    _add_store_options(parser, "with --listen: ")
    parser.add_argument("--open", action="store_true",
                        help="found an open swarm: anyone holding the key is a member, nobody can be removed "
                        "(implied by --swarm-key or SWARM_KEY; default: an admitted swarm with this coordinator as admin)")
    parser.add_argument("--invite-uses", type=int, default=1, metavar="N", help="admitted: joins the printed invite allows (default 1)")
    parser.add_argument("--invite-hours", type=float, default=1.0, metavar="H", help="admitted: the invite expires after H hours (default 1)")
    parser.add_argument("--invite-file", type=Path, default=None, metavar="PATH", help="admitted: also write the invite link to PATH (0600)")
    parser.add_argument("--rekey-minutes", type=float, default=0.0, metavar="M",
                        help="admitted: start a new swarm-key epoch every M minutes (default: only when a member is removed)")
    args = parser.parse_args(argv)
    if not 1 <= args.invite_uses <= 1000 or args.invite_hours <= 0 or args.rekey_minutes < 0:
        parser.error("--invite-uses must be 1..1000, --invite-hours > 0, --rekey-minutes >= 0")
    configure_logging()
    return asyncio.run(_run_coordinator(args))


async def _run_coordinator(args: argparse.Namespace) -> int:
    from .agent import AgentRole, SwarmAgent, SwarmConfig

    stop = _stop_on_signals()
    server = None
    relay_url, key = _swarm_key_from(args.relay, args.swarm_key)
    if args.listen is not None:
        server = _open_relay(args.listen[0], args.listen[1], args.web, args.shm_hub, _data_dir(args))
        if server is None:
            return 2
        await server.start()
        relay_url = f"ws://{args.listen[0]}:{server.port}/ws"
        print(f"relay listening on {relay_url}", flush=True)
        print(f"GUN graph: {_gun_file(_data_dir(args)) or 'in memory only'}", flush=True)
        if args.web is not None:
            print(f"web app: http://{args.listen[0]}:{server.port}/", flush=True)
        if args.shm_hub:
            print(f"shared-memory hub: shm://{args.shm_hub}", flush=True)
    admitted = key is None and not args.open
    config = SwarmConfig(role=AgentRole.COORDINATOR, capabilities=("coordinator", "executor"), swarm_key=key,
                         found_admitted=admitted, rekey_interval_ms=int(args.rekey_minutes * 60_000))
    if args.agent_id:
        config = config.with_agent_id(args.agent_id)
    admin_dir = _data_dir(args) / "admin" if admitted and _data_dir(args) is not None else None
    try:
        swarm = None if admin_dir is None else await _open_admin(admin_dir, config, args.agent_id)
    except (AdminStateError, IdentityFileError) as exc:
        print(f"edge-coordinator: {exc}", file=sys.stderr, flush=True)
        if server is not None:
            await server.stop()
        return 2
    if swarm is not None:
        config = config.with_agent_id(swarm.agent_id)
        print(f"admin state: {admin_dir} (kept across restarts)", flush=True)
    agent = await SwarmAgent.new(config, swarm)
    if not (relay_url or config.coordinator_url):
        raise SystemExit("edge-coordinator needs --listen HOST:PORT, --relay URL or SWARM_COORDINATOR")
    try:
        await agent.join_swarm(relay_url)
        url = relay_url or config.coordinator_url
        print(f"coordinator {agent.agent_id} joined swarm {agent.swarm.swarm_id} "
              f"({'admitted, this coordinator is its admin' if admitted else 'open'})", flush=True)
        if admitted:
            token = await agent.create_invite(max_uses=args.invite_uses, ttl_ms=int(args.invite_hours * 3600_000))
            link = f"{url}#invite={token}"
            if args.invite_file is not None:
                _write_private(args.invite_file, link + "\n")
            print(f"invite: {link}", flush=True)
            print(f"  (good for {args.invite_uses} join{'s' if args.invite_uses != 1 else ''}, expires in "
                  f"{args.invite_hours:g} h; the swarm key is not in it)", flush=True)
        else:
            print(f"invite: {url}#swarm_key={agent.swarm.swarm_key.key.hex()}", flush=True)
            print("  (open swarm: the key is in the link, anyone holding it is a member and nobody can be removed)",
                  flush=True)
        return await _run_until_done(agent, args, stop)
    finally:
        await agent.leave()
        if server is not None:
            await server.stop()


async def _open_admin(admin_dir: Path, config, agent_id: str | None):
    """The admitted swarm this coordinator is admin of, kept in `admin_dir` (its identity and signed admin state,
    both 0600), or a new one saved there: a restart keeps the swarm, its members, revocations and invites."""
    from .p2p.admin_file import AdminStateFile, load_or_create_identity
    from .p2p.admin_store import open_admin_swarm
    from .platform import default_runtime

    identity = await load_or_create_identity(default_runtime().crypto, admin_dir / "identity.json")
    store = AdminStateFile(admin_dir / "state.json")
    return await open_admin_swarm(identity, config.effective_capabilities(), store.load, store.save,
                                  agent_id=agent_id, new_agent_id=config.agent_id)


def _write_private(path: Path, text: str) -> None:
    """An invite is a credential: readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def agent_main(argv: list[str] | None = None) -> int:
    parser = _agent_parser("edge-agent", "A swarm agent that joins a relay and takes part in the swarm.")
    parser.add_argument("--role", choices=["worker", "scout", "specialist", "coordinator"], default="worker")
    parser.add_argument("--coordinator", default=None, metavar="URL",
                        help="relay URL with an invite: ws://host:port/ws#invite=TOKEN (admitted swarm) or "
                        "#swarm_key=HEX (open swarm); default SWARM_COORDINATOR")
    parser.add_argument("--capability", action="append", default=[], help="capability to advertise (repeatable)")
    parser.add_argument("--submit", default=None, metavar="TEXT",
                        help="once a wasm-capable peer is there, submit the sample task (upper-cases TEXT) and print its verified receipt")
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help="keep this agent's identity (DIR/identity.json) and, once admitted, its certificate and "
                        "epoch key (DIR/membership.json), both 0600: a restart rejoins as the same member without "
                        "spending an invite (default: none, a fresh identity each start)")
    args = parser.parse_args(argv)
    configure_logging()
    return asyncio.run(_run_agent(args))


async def _run_agent(args: argparse.Namespace) -> int:
    from .agent import AgentRole, SwarmAgent, SwarmConfig

    stop = _stop_on_signals()

    url, invite = _invite_from(args.coordinator or os.environ.get("SWARM_COORDINATOR"))
    url, key = _swarm_key_from(url, args.swarm_key) if invite is None else (url, None)
    if not url:
        raise SystemExit("edge-agent needs --coordinator URL or SWARM_COORDINATOR")
    if key is None and invite is None:
        raise SystemExit("edge-agent needs an invite or the swarm key: an invite URL (#invite=... or "
                         "#swarm_key=...), --swarm-key or SWARM_KEY")
    config = SwarmConfig(role=AgentRole(args.role), capabilities=tuple(args.capability), swarm_key=key, invite=invite)
    if args.agent_id:
        config = config.with_agent_id(args.agent_id)
    member = swarm = None
    resumed = False
    if args.data_dir is not None:
        try:
            member, swarm, resumed = await _open_member(args.data_dir, config, args.agent_id, invite)
        except (MemberStateError, IdentityFileError) as exc:
            print(f"edge-agent: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            return 2
        config = config.with_agent_id(swarm.agent_id)
    agent = await SwarmAgent.new(config, swarm)
    background = []
    try:
        try:
            await agent.join_swarm(url)
        except MembershipRefused as exc:
            print(f"edge-agent: {agent.agent_id} refused by the relay: {exc}", file=sys.stderr, flush=True)
            return 3
        how = "rejoined" if resumed else "joined"
        print(f"{args.role} {agent.agent_id} {how} swarm {agent.swarm.swarm_id} via {url}", flush=True)
        if member is not None:
            await member.keep(agent.swarm)
            background.append(asyncio.create_task(member.keep_up(agent.swarm)))
        if args.submit is not None:
            background.append(asyncio.create_task(_submit_sample(agent, args.submit)))
        try:
            return await _run_until_done(agent, args, stop)
        finally:
            for task in background:
                task.cancel()
    finally:
        await agent.leave()


async def _open_member(data_dir: Path, config, agent_id: str | None, invite: str | None):
    """(MemberDir, our swarm state, resumed?): our identity kept in `data_dir` (made on the first start), with
    the membership saved there by an earlier run, which is used instead of the invite."""
    from .p2p.invites import Invite
    from .p2p.member_file import MemberDir
    from .p2p.swarm import P2PSwarm
    from .platform import default_runtime

    member = MemberDir(data_dir)
    identity = await member.identity(default_runtime().crypto)
    capabilities = config.effective_capabilities()
    swarm = await member.resume(identity, capabilities, agent_id, Invite.from_token(invite).swarm if invite else None)
    if swarm is not None:
        print(f"membership: {member.state.path} (certificate and epoch {swarm.admission.epochs.epoch} key kept; "
              "no invite spent)", flush=True)
        return member, swarm, True
    if invite is not None:
        return member, await P2PSwarm.join_admitted(config.agent_id, invite, capabilities, identity=identity), False
    return member, await P2PSwarm.create(config.agent_id, config.swarm_key, capabilities, identity=identity), False


async def _submit_sample(agent, text: str, timeout: float = 30.0) -> None:
    """The sample task end to end: wait for an executor, submit, print the verified receipt and the output."""
    from .tasks.samples import sample_module

    deadline = asyncio.get_running_loop().time() + timeout
    while not any("wasm" in p.capabilities and not p.left for p in agent.peers.values()):
        if asyncio.get_running_loop().time() > deadline:
            print(f"[{agent.agent_id}] task: no wasm-capable peer within {timeout:.0f} s", flush=True)
            return
        await asyncio.sleep(0.1)
    task_id = await agent.submit_task(sample_module(), text.encode())
    try:
        receipt = await agent.wait_receipt(task_id, timeout)
    except asyncio.TimeoutError:
        print(f"[{agent.agent_id}] task {task_id}: no verified receipt within {timeout:.0f} s", flush=True)
        return
    output = agent.get_artifact(receipt.output_cid).decode(errors="replace") if receipt.output_cid else None
    print(f"[{agent.agent_id}] task {task_id} {receipt.status.value} by {receipt.executor}, receipt verified, "
          f"fuel {receipt.fuel_used}, output {output!r}", flush=True)


def _stop_on_signals() -> asyncio.Event:
    """An event Ctrl-C / SIGTERM sets. Installed before anything is printed, so a signal that
    follows a "joined" line at once still ends the run cleanly (leave, exit 0), not by default action."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _run_until_done(agent, args: argparse.Namespace, stop: asyncio.Event) -> int:
    """Print the peer table now and then until `stop` (Ctrl-C / SIGTERM) or --duration."""
    loop = asyncio.get_running_loop()
    if args.duration is not None:
        loop.call_later(args.duration, stop.set)
    refused = getattr(agent.links.get("relay"), "refused", None) or asyncio.Event()
    while not stop.is_set():
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(refused.wait())]
        await asyncio.wait(waits, timeout=args.status_every, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        if agent.refusal is not None:
            print(f"{agent.agent_id}: dropped by the relay: {agent.refusal}", file=sys.stderr, flush=True)
            return 3
        peers = agent.peer_table()
        summary = ", ".join(f"{p['agent_id']}({p['role']},{p['status']})" for p in peers) or "none yet"
        print(f"[{agent.agent_id}] peers: {summary}", flush=True)
    return 0


def demo_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edge-demo",
        description="Local swarm demo: a coordinator and three workers exchange signed, encrypted frames.",
        epilog="Log level: EDGE_LOG (or RUST_LOG) = debug|info|warning|error.",
    )
    parser.add_argument("--version", action="version", version=f"edge-demo {__version__}")
    parser.parse_args(argv)
    configure_logging("warning")
    from .demo import run_demo

    summary = asyncio.run(run_demo())
    return 0 if summary["rejected"] == summary["attacks"] else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(relay_main())
