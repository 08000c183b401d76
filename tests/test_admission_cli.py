"""edge-coordinator founds an admitted swarm by default and prints an invite good for N joins; edge-agent joins
with it (no swarm key anywhere in the link), and a join past the invite's uses is refused: that agent exits
with one line saying why."""

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
        # The third asker is refused: it exits at once, code 3, with one line saying why, not a timeout traceback.
        while time.monotonic() < deadline and not any(proc.poll() is not None for _, proc, _ in agents):
            time.sleep(0.05)
        refused = [(name, proc) for name, proc, _ in agents if proc.poll() is not None]
        assert len(refused) == 1 and refused[0][1].returncode == 3, refused
        for name in ("w-1", "w-2", "w-3"):
            if name != refused[0][0]:
                _read_until(coordinator, rf"\[coord-1\] peers: .*{name}\(worker,active\)", deadline, coord_out)
    finally:
        outputs = {name: _stop(proc, errf) for name, proc, errf in agents}
        coord_rest, coord_err = _stop(coordinator, coord_errf)
    coord_text = "".join(coord_out) + coord_rest
    assert coordinator.returncode == 0, coord_text + coord_err[-2000:]
    joined = sorted(name for name, (out, _) in outputs.items() if f"worker {name} joined swarm" in out)
    assert len(joined) == 2, outputs  # two of the three, whichever asked first
    refused_err = outputs[refused[0][0]][1]
    last = refused_err.strip().splitlines()[-1]  # (any lines before it are the INFO log)
    assert last.startswith(f"edge-agent: {refused[0][0]} refused by the relay: InviteExhausted"), refused_err
    assert "Traceback" not in refused_err, refused_err
