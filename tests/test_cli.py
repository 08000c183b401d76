"""The console scripts as a user runs them: help texts, a coordinator with its relay, an agent joining by invite."""

from __future__ import annotations

import re
import subprocess
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


def test_coordinator_invite_agent_joins_and_both_see_each_other():
    port = free_port()
    deadline = time.monotonic() + 25
    coordinator = subprocess.Popen(
        [script("edge-coordinator"), "--id", "coord-1", "--listen", f"127.0.0.1:{port}", "--duration", "3",
         "--status-every", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(RUST_LOG="debug"), cwd="/")
    coord_out: list[str] = []
    agent = None
    try:
        _read_until(coordinator, rf"relay listening on ws://127\.0\.0\.1:{port}/ws", deadline, coord_out)
        invite = _read_until(coordinator, r"invite: (ws://\S+#swarm_key=[0-9a-f]{64})", deadline, coord_out).group(1)
        agent = subprocess.Popen(
            [script("edge-agent"), "--role", "scout", "--id", "scout-7", "--coordinator", invite, "--duration", "2",
             "--status-every", "0.3"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(), cwd="/")
        agent_out, agent_err = agent.communicate(timeout=max(1, deadline - time.monotonic()))
        _read_until(coordinator, r"\[coord-1\] peers: .*scout-7\(scout,active\)", deadline, coord_out)
        rest, coord_err = coordinator.communicate(timeout=max(1, deadline - time.monotonic()))
    finally:
        for proc in (coordinator, agent):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    coord_text = "".join(coord_out) + rest
    assert coordinator.returncode == 0, coord_text + coord_err[-2000:]
    assert agent.returncode == 0, agent_out + agent_err[-2000:]
    assert re.search(r"coordinator coord-1 joined swarm \S+", coord_text)
    assert re.search(r"scout scout-7 joined swarm \S+ via ws://127\.0\.0\.1:\d+/ws", agent_out)
    assert "swarm_key" not in agent_out.split(" via ")[1]  # the key is not echoed back
    assert re.search(r"\[scout-7\] peers: .*coord-1\(coordinator,active\)", agent_out), agent_out
    # RUST_LOG=debug was taken as the log level: debug records from the package appear on stderr.
    assert " DEBUG " in coord_err, coord_err[-2000:]


def test_rust_log_with_crate_filters_is_accepted():
    result = run(script("edge-agent"), "--duration", "1", RUST_LOG="ruvector_edge=debug,info")
    assert "SWARM_COORDINATOR" in result.stderr  # it got as far as reading its arguments
    assert "Traceback" not in result.stderr


def test_agent_reads_swarm_coordinator_and_swarm_key_from_the_environment():
    port = free_port()
    coordinator = subprocess.Popen(
        [script("edge-coordinator"), "--id", "c-env", "--listen", f"127.0.0.1:{port}", "--duration", "3",
         "--status-every", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(), cwd="/")
    seen: list[str] = []
    try:
        invite = _read_until(coordinator, r"invite: (\S+)", time.monotonic() + 15, seen).group(1)
        url, key = invite.split("#swarm_key=")
        result = run(script("edge-agent"), "--id", "w-env", "--duration", "0.5", "--status-every", "0.2",
                     SWARM_COORDINATOR=url, SWARM_KEY=key)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "worker w-env joined swarm" in result.stdout
        assert "c-env(coordinator" in result.stdout
    finally:
        coordinator.kill()
        coordinator.communicate()


def test_edge_demo_exits_0_and_refuses_every_attack():
    result = run(script("edge-demo"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"Done: 4 agents, 3/3 attacks refused", result.stdout), result.stdout
    assert "this is a bug" not in result.stdout
