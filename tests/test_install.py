"""The wheel as people install it: `pip install ruvector_edge-….whl` into a fresh venv, no extras.

The natively needed packages come with the plain install (environment markers keep them
out under Pyodide, where the browser loads the same wheel with nothing extra: e2e/boot),
and a command missing a dependency says what to install in one line, no traceback.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from relay_fixtures import child_env

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[1]


def run(*argv, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          env=child_env(PIP_DISABLE_PIP_VERSION_CHECK="1"), cwd=kwargs.get("cwd", "/"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = run(sys.executable, "-m", "build", "--wheel", "--outdir", out, ROOT, cwd=ROOT)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (path,) = out.glob("ruvector_edge-*-py3-none-any.whl")
    return path


def fresh_venv(where: Path, wheel: Path, *pip_flags: str) -> Path:
    made = run(sys.executable, "-m", "venv", where)
    assert made.returncode == 0, made.stderr
    installed = run(where / "bin" / "python", "-m", "pip", "install", "-q", *pip_flags, wheel)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return where / "bin"


def requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(name).decode())
    return [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]


def test_native_dependencies_apply_natively_and_none_under_pyodide(wheel):
    base = [r for r in requirements(wheel) if r.marker is None or "extra" not in str(r.marker)]
    names = {r.name.lower() for r in base}
    assert {"pynacl", "cryptography", "lz4", "numpy", "aiohttp", "wasmtime"} <= names
    here = default_environment()
    pyodide = {**here, "sys_platform": "emscripten", "platform_system": "Emscripten"}
    assert all(r.marker is None or r.marker.evaluate(here) for r in base)
    assert [r.name for r in base if r.marker is None or r.marker.evaluate(pyodide)] == []


def test_plain_install_runs_the_commands(wheel, tmp_path):
    bin_dir = fresh_venv(tmp_path / "venv", wheel)
    demo = run(bin_dir / "edge-demo", timeout=120)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-3000:]
    assert "Done: 4 agents, 3/3 attacks refused" in demo.stdout
    for command in ("edge-relay", "edge-coordinator", "edge-agent"):
        helped = run(bin_dir / command, "--help", timeout=60)
        assert helped.returncode == 0 and "usage:" in helped.stdout, helped.stderr[-2000:]


def test_a_missing_dependency_is_one_line_not_a_traceback(wheel, tmp_path):
    bin_dir = fresh_venv(tmp_path / "bare", wheel, "--no-deps")
    relay = run(bin_dir / "edge-relay", "--listen", "127.0.0.1:0", timeout=60)
    demo = run(bin_dir / "edge-demo", timeout=60)
    for result, needed in ((relay, "pip install aiohttp"), (demo, "pip install pynacl cryptography")):
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and needed in lines[0], result.stderr
