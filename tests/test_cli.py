"""The console scripts as a user runs them: help texts, a coordinator with its relay, an agent joining by invite."""

from __future__ import annotations

import re
import subprocess
import tempfile
import time

import pytest

from relay_fixtures import child_env, free_port, script

pytestmark = pytest.mark.timeout(40)

LOG_VARS = ("EDGE_LOG", "RUST_LOG")


def run(*argv: str, timeout: float = 15, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=child_env(**env), cwd="/")


@pytest.mark.parametrize(
    "command, variables",
    [
        ("edge-relay", LOG_VARS),
        ("edge-coordinator", ("SWARM_COORDINATOR", "SWARM_SYNC_INTERVAL") + LOG_VARS),
        ("edge-agent", ("SWARM_COORDINATOR", "SWARM_SYNC_INTERVAL") + LOG_VARS),
        ("edge-demo", LOG_VARS),
    ],
)
def test_help_exits_0_and_names_the_environment_variables(command, variables):
    result = run(script(command), "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {command}")
    missing = [v for v in variables if v not in result.stdout]
    assert not missing, f"{command} --help does not mention {missing}"


def test_agent_refuses_to_start_without_a_relay_or_key():
    result = run(script("edge-agent"), "--duration", "1")
    assert result.returncode != 0 and "SWARM_COORDINATOR" in result.stderr
    result = run(script("edge-agent"), "--coordinator", "ws://127.0.0.1:9/ws", "--duration", "1")
    assert result.returncode != 0 and "swarm key" in result.stderr
    result = run(script("edge-relay"), "--listen", "nonsense")
    assert result.returncode == 2 and "HOST:PORT" in result.stderr


def _read_until(proc: subprocess.Popen, pattern: str, deadline: float, seen: list[str]) -> re.Match:
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = regex.search(line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r}; got {''.join(seen)[-2000:]}")


def _start(tmp_path, name: str, *argv: str, **env: str) -> tuple[subprocess.Popen, object]:
    """Start a console script with stdout piped (read line by line) and stderr in a file (never blocks it)."""
    # A file of its own per process: tests start several of one script, and two writers of one file overwrite
    # each other's lines (seen: one agent's refusal line cut into by another's log).
    err = tempfile.NamedTemporaryFile("w+", dir=tmp_path, prefix=f"{name}-", suffix=".err", delete=False)
    proc = subprocess.Popen([script(name), *argv], stdout=subprocess.PIPE, stderr=err, text=True,
                            env=child_env(**env), cwd="/")
    return proc, err


def _stop(proc: subprocess.Popen, err, timeout: float = 15) -> tuple[str, str]:
    """SIGTERM (what Ctrl-C or a service manager sends), then the rest of stdout and all of stderr."""
    if proc.poll() is None:
        proc.terminate()
    try:
        rest, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rest, _ = proc.communicate()
    err.seek(0)
    return rest, err.read()


def test_coordinator_invite_agent_joins_and_both_see_each_other(tmp_path):
    port = free_port()
    deadline = time.monotonic() + 30
    coordinator, coord_errf = _start(tmp_path, "edge-coordinator", "--id", "coord-1", "--listen", f"127.0.0.1:{port}",
                                     "--data-dir", str(tmp_path / "relay-data"), "--status-every", "0.3", "--open", RUST_LOG="debug")
    coord_out: list[str] = []
    agent_out: list[str] = []
    agent = agent_errf = None
    try:
        _read_until(coordinator, rf"relay listening on ws://127\.0\.0\.1:{port}/ws", deadline, coord_out)
        invite = _read_until(coordinator, r"invite: (ws://\S+#swarm_key=[0-9a-f]{64})", deadline, coord_out).group(1)
        agent, agent_errf = _start(tmp_path, "edge-agent", "--role", "scout", "--id", "scout-7", "--coordinator", invite,
                                   "--status-every", "0.3")
        _read_until(agent, r"\[scout-7\] peers: .*coord-1\(coordinator,active\)", deadline, agent_out)
        _read_until(coordinator, r"\[coord-1\] peers: .*scout-7\(scout,active\)", deadline, coord_out)
    finally:
        agent_rest, agent_err = _stop(agent, agent_errf) if agent is not None else ("", "")
        coord_rest, coord_err = _stop(coordinator, coord_errf)
    coord_text = "".join(coord_out) + coord_rest
    agent_text = "".join(agent_out) + agent_rest
    assert coordinator.returncode == 0, coord_text + coord_err[-2000:]
    assert agent.returncode == 0, agent_text + agent_err[-2000:]
    assert re.search(r"coordinator coord-1 joined swarm \S+", coord_text)
    assert re.search(r"scout scout-7 joined swarm \S+ via ws://127\.0\.0\.1:\d+/ws", agent_text)
    assert "swarm_key" not in agent_text.split(" via ")[1]  # the key is not echoed back
    # RUST_LOG=debug was taken as the log level: debug records from the package appear on stderr.
    assert " DEBUG " in coord_err, coord_err[-2000:]


def test_rust_log_with_crate_filters_is_accepted():
    result = run(script("edge-agent"), "--duration", "1", RUST_LOG="ruvector_edge=debug,info")
    assert "SWARM_COORDINATOR" in result.stderr  # it got as far as reading its arguments
    assert "Traceback" not in result.stderr


def test_agent_reads_swarm_coordinator_and_swarm_key_from_the_environment(tmp_path):
    port = free_port()
    deadline = time.monotonic() + 30
    coordinator, coord_errf = _start(tmp_path, "edge-coordinator", "--id", "c-env", "--listen", f"127.0.0.1:{port}",
                                     "--data-dir", str(tmp_path / "relay-data"), "--status-every", "5", "--open")
    agent = agent_errf = None
    seen: list[str] = []
    try:
        invite = _read_until(coordinator, r"invite: (\S+)", deadline, []).group(1)
        url, key = invite.split("#swarm_key=")
        agent, agent_errf = _start(tmp_path, "edge-agent", "--id", "w-env", "--status-every", "0.2",
                                   SWARM_COORDINATOR=url, SWARM_KEY=key)
        _read_until(agent, r"worker w-env joined swarm", deadline, seen)
        _read_until(agent, r"c-env\(coordinator", deadline, seen)
    finally:
        agent_rest, agent_err = _stop(agent, agent_errf) if agent is not None else ("", "")
        _stop(coordinator, coord_errf)
    assert agent.returncode == 0, agent_err[-2000:]


def test_edge_demo_exits_0_and_refuses_every_attack():
    result = run(script("edge-demo"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"Done: 4 agents, 3/3 attacks refused", result.stdout), result.stdout
    assert "this is a bug" not in result.stdout
