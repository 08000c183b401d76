"""Real nats-server processes for the federation tests: single nodes and clusters on loopback ports,
optionally with user/password or TLS (a CA and certificates the test makes itself)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from relay_fixtures import free_port

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


@dataclass
class NatsNode:
    name: str
    port: int
    cluster_port: int
    store: Path
    args: list[str]
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log = self.store.parent / f"{self.name}.log"
        self.proc = subprocess.Popen([NATS_SERVER, *self.args], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "ab"), start_new_session=True)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class NatsCluster:
    nodes: list[NatsNode] = field(default_factory=list)

    @property
    def urls(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


def nats_nodes(tmp: Path, count: int, extra: list[str] = ()) -> NatsCluster:
    ports = [(free_port(), free_port()) for _ in range(count)]
    cluster = NatsCluster()
    for index, (port, cport) in enumerate(ports):
        name = f"n{index}"
        store = tmp / name
        store.mkdir(parents=True, exist_ok=True)
        args = ["-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store), "-n", name, *extra]
        if count > 1:
            routes = ",".join(f"nats://127.0.0.1:{c}" for i, (_, c) in enumerate(ports) if i != index)
            args += ["--cluster_name", "edge", "--cluster", f"nats://127.0.0.1:{cport}", "--routes", routes]
        cluster.nodes.append(NatsNode(name, port, cport, store, args))
    return cluster


async def wait_jetstream(url: str, timeout: float = 30.0, **connect) -> None:
    """Until JetStream answers on `url` (a cluster first elects its meta leader), bounded."""
    import nats

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            nc = await nats.connect(url, connect_timeout=1, max_reconnect_attempts=0, allow_reconnect=False, **connect)
            try:
                await nc.jetstream().account_info()
                return
            finally:
                await nc.close()
        except Exception as exc:  # noqa: BLE001 - anything before readiness: try again, bounded
            last = exc
            await asyncio.sleep(0.2)
    raise AssertionError(f"JetStream at {url} not ready after {timeout}s: {last!r}")


@contextlib.asynccontextmanager
async def running_nats(tmp: Path, count: int = 1, extra: list[str] = (), **connect):
    cluster = nats_nodes(tmp, count, list(extra))
    for node in cluster.nodes:
        node.start()
    try:
        for node in cluster.nodes:
            await wait_jetstream(node.url, **connect)
        yield cluster
    finally:
        cluster.stop()


def make_tls_files(tmp: Path) -> dict[str, str]:
    """A CA and a server certificate for 127.0.0.1, signed by it (PEM files in tmp)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("edge test CA")).issuer_name(name("edge test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = {"ca": tmp / "ca.pem", "cert": tmp / "server.pem", "key": tmp / "server-key.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return {k: str(v) for k, v in files.items()}
