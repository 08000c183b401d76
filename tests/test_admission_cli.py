"""edge-coordinator founds an admitted swarm by default and prints an invite good for N joins; edge-agent joins
with it (no swarm key anywhere in the link), and a join past the invite's uses is refused."""

from __future__ import annotations

import os
import stat
import time

from relay_fixtures import free_port
from test_cli import _read_until, _start, _stop


def test_the_printed_invite_admits_as_many_agents_as_it_says_and_no_more(tmp_path):
    port = free_port()
    deadline = time.monotonic() + 40
    invite_file = tmp_path / "invite.txt"
    coordinator, coord_errf = _start(tmp_path, "edge-coordinator", "--id", "coord-1", "--listen", f"127.0.0.1:{port}",
                                     "--memory-only", "--status-every", "0.3", "--invite-uses", "2",
                                     "--invite-file", str(invite_file))
    coord_out: list[str] = []
    agents = []
    try:
        _read_until(coordinator, r"joined swarm adm-[0-9a-f]{32} \(admitted", deadline, coord_out)
        link = _read_until(coordinator, r"invite: (ws://\S+#invite=[A-Za-z0-9_-]+)", deadline, coord_out).group(1)
        _read_until(coordinator, r"good for 2 joins", deadline, coord_out)
        assert "swarm_key" not in link
        assert invite_file.read_text().strip() == link
        assert stat.S_IMODE(os.stat(invite_file).st_mode) == 0o600
        for name in ("w-1", "w-2", "w-3"):
            agents.append((name, *_start(tmp_path, "edge-agent", "--id", name, "--coordinator", link,
                                         "--status-every", "0.3", "--duration", "20")))
        for name in ("w-1", "w-2"):
            _read_until(coordinator, rf"\[coord-1\] peers: .*{name}\(worker,active\)", deadline, coord_out)
    finally:
        outputs = {name: _stop(proc, errf) for name, proc, errf in agents}
        coord_rest, coord_err = _stop(coordinator, coord_errf)
    coord_text = "".join(coord_out) + coord_rest
    assert coordinator.returncode == 0, coord_text + coord_err[-2000:]
    joined = sorted(name for name, (out, _) in outputs.items() if f"worker {name} joined swarm" in out)
    assert len(joined) == 2, outputs  # two of the three, whichever asked first
