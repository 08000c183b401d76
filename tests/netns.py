"""A private network of Linux network namespaces for the federation tests: each relay and NATS node
its own host, so traffic crosses interfaces and a host can be cut off by taking its link down.

Shape: one namespace `<p>sw` holds a bridge (the switch); each host is a namespace `<p>h<i>` whose
`eth0` is one end of a veth pair, the other end `<p>h<i>b` a port of that bridge. The test process
stays in the root namespace and joins the switch with one more veth pair (`<p>r`, address .254), so
in-process agents reach the hosts over the bridge too. The bridge sits in its own namespace, not in
the root one, so the root namespace's firewall never filters bridged frames and only one interface
is added there.

`<p>` is `rvt<pid>`: runs in parallel never share names, and a run that crashed before its teardown
is recognised by its dead pid and cleaned away at the next start. The subnet 10.X.Y.0/24 is picked
from the pid and skipped while a route of the root namespace already covers it. Needs root and `ip`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

IP = shutil.which("ip") or "/usr/sbin/ip"
PREFIX = "rvt"
_NAME = re.compile(rf"^{PREFIX}(\d+)")


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None when they can): the tests skip with this reason."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not os.path.exists(IP):
        return "iproute2 (`ip`) is not installed"
    return None


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run([IP, *args], capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def _root_links() -> list[str]:
    return [line.split(":")[1].strip().split("@")[0] for line in ip("-o", "link", "show").splitlines()]


def ours(pid: int | None = None) -> list[str]:
    """Namespaces and root-namespace links named by this module (of run `pid`, or of every run)."""
    names = [n for n in [*_namespaces(), *_root_links()] if _NAME.match(n)]
    return names if pid is None else [n for n in names if int(_NAME.match(n).group(1)) == pid]


def clean_leftovers() -> None:
    """Remove what runs that are gone left behind (their pid is dead); a live run's names are left alone."""
    for name in ours():
        if not _alive(int(_NAME.match(name).group(1))):
            if name in _namespaces():
                ip("netns", "del", name, check=False)
            else:
                ip("link", "del", name, check=False)


def _free_subnet(pid: int) -> ipaddress.IPv4Network:
    routes = [ipaddress.ip_network(line.split()[0], strict=False) for line in ip("-4", "route", "show").splitlines()
              if line.split() and line.split()[0] != "default"]
    for attempt in range(256):
        n = pid + attempt * 7919
        net = ipaddress.ip_network(f"10.{200 + n % 50}.{(n // 50) % 256}.0/24")
        if not any(net.overlaps(r) for r in routes):
            return net
    raise RuntimeError("no free 10.x.y.0/24 subnet for the test network")


@dataclass
class Network:
    hosts: list[str]
    pid: int = field(default_factory=os.getpid)
    procs: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.prefix = f"{PREFIX}{self.pid}"
        self.subnet = _free_subnet(self.pid)
        self.switch = f"{self.prefix}sw"
        self.root_link = f"{self.prefix}r"

    def ns(self, host: str) -> str:
        return f"{self.prefix}h{self.hosts.index(host)}"

    def port(self, host: str) -> str:
        """The host's port on the switch: taking it down cuts the host off, as a pulled cable would."""
        return f"{self.ns(host)}b"

    def addr(self, host: str) -> str:
        return str(self.subnet[self.hosts.index(host) + 1])

    def up(self) -> None:
        prefix_len = self.subnet.prefixlen
        ip("netns", "add", self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.hosts:
            ns, port = self.ns(host), self.port(host)
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("link", "add", f"{ns}a", "type", "veth", "peer", "name", port)
            ip("link", "set", f"{ns}a", "netns", ns)
            ip("-n", ns, "link", "set", f"{ns}a", "name", "eth0")
            ip("-n", ns, "addr", "add", f"{self.addr(host)}/{prefix_len}", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("link", "set", port, "netns", self.switch)
            ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        ip("link", "add", self.root_link, "type", "veth", "peer", "name", f"{self.root_link}b")
        ip("link", "set", f"{self.root_link}b", "netns", self.switch)
        ip("-n", self.switch, "link", "set", f"{self.root_link}b", "master", "br0", "up")
        ip("addr", "add", f"{self.subnet[254]}/{prefix_len}", "dev", self.root_link)
        ip("link", "set", self.root_link, "up")

    def popen(self, host: str, argv: list[str], log: Path, **options) -> subprocess.Popen:
        """A process on `host` (killed at teardown at the latest), its output appended to `log`."""
        with open(log, "ab") as out:
            proc = subprocess.Popen([IP, "netns", "exec", self.ns(host), *argv], stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, **options)
        self.procs.append(proc)
        return proc

    def cut(self, host: str) -> None:
        ip("-n", self.switch, "link", "set", self.port(host), "down")

    def heal(self, host: str) -> None:
        ip("-n", self.switch, "link", "set", self.port(host), "up")

    def down(self) -> None:
        """Stop every process started here (each bounded, then killed), then remove every namespace and
        link; safe to call on a half-built network."""
        for proc in reversed(self.procs):  # the last started first: relays stop while their NATS still answers
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        for name in ours(self.pid):
            if name in _namespaces():
                ip("netns", "del", name, check=False)
        for name in ours(self.pid):  # the root end goes with its peer; this catches a half-made pair
            ip("link", "del", name, check=False)


@contextlib.contextmanager
def network(hosts: list[str]):
    """A network of `hosts`, removed on the way out whatever happened (asserted gone)."""
    clean_leftovers()
    net = Network(list(hosts))
    try:
        net.up()
        yield net
    finally:
        net.down()
        left = ours(net.pid)
        assert not left, f"test network not removed: {left}"
