"""Fixtures of the provider suite: every test runs once per provider ("native", "docker").

The Docker engine: DOCKER_HOST when it answers; otherwise, under CI=true or with
WARDEN_TEST_DOCKER=1, a private dockerd started once per test run by scripts/dockerd-start (own
socket and data root under /tmp, no bridge, no iptables) and stopped at the end. warden's own
image is built into it (`docker import`, no registry). Without an engine the docker tests skip
locally and fail under CI=true.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI, require

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS = ["native", "docker"]


def _engine_answers() -> bool:
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=10)
        client.ping()
        client.close()
        return True
    except docker.errors.DockerException:
        return False


class DockerEngine:
    """The engine the suite uses; ``started`` when this run started it (and may restart it)."""

    def __init__(self) -> None:
        self.available = False
        self.started = False
        self.dir = f"/tmp/warden-dockerd-test-{os.getpid()}"
        self.why = ""
        self.image = None

    def env(self) -> dict:
        return dict(os.environ, WARDEN_DOCKERD_DIR=self.dir)

    def start(self) -> None:
        out = subprocess.run([str(ROOT / "scripts" / "dockerd-start")], env=self.env(),
                             capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            self.why = f"scripts/dockerd-start failed: {out.stderr.strip()[-500:]}"
            return
        host = out.stdout.strip().rpartition("DOCKER_HOST=")[2]
        os.environ["DOCKER_HOST"] = host
        self.started = True
        self.available = _engine_answers()

    def stop(self, keep: bool = False) -> None:
        env = self.env()
        if keep:
            env["WARDEN_DOCKERD_KEEP"] = "1"
        subprocess.run([str(ROOT / "scripts" / "dockerd-stop")], env=env, capture_output=True,
                       text=True, timeout=120, check=False)

    def restart(self) -> None:
        """Stop the engine (its containers stop with it) and start it on the same data root."""
        self.stop(keep=True)
        self.start()


@pytest.fixture(scope="session")
def docker_engine():
    engine = DockerEngine()
    if os.environ.get("DOCKER_HOST") and _engine_answers():
        engine.available = True
    elif IN_CI or os.environ.get("WARDEN_TEST_DOCKER") == "1":
        if os.geteuid() != 0:
            engine.why = "starting a private dockerd needs root"
        else:
            engine.start()
    else:
        engine.why = ("no Docker engine: set DOCKER_HOST, or WARDEN_TEST_DOCKER=1 to start a "
                      "private dockerd (scripts/dockerd-start)")
    if engine.available:
        from warden.providers.docker import images

        engine.image = images.ensure_image()
    try:
        yield engine
    finally:
        if engine.started:
            from warden.providers.registry import _instances

            p = _instances.pop("docker", None)
            if p is not None:
                p.close()
            engine.stop()


def _native_ok() -> tuple[bool, str]:
    try:
        import warden.providers.native  # noqa: F401
    except ImportError as exc:
        return False, f"the native provider does not import: {exc}"
    if os.geteuid() != 0:
        return False, "the native provider's tests run as root (cgroup creation)"
    if not os.path.exists("/proc/self/ns/user"):
        return False, "user namespaces are not available"
    return True, ""


@pytest.fixture(params=PROVIDERS)
def provider(request):
    """The provider under test (one shared instance per name, as warden itself uses)."""
    from warden.providers import get_provider

    if request.param == "docker":
        engine = request.getfixturevalue("docker_engine")
        require(engine.available, engine.why or "the Docker engine does not answer")
    else:
        ok, why = _native_ok()
        require(ok, why)
    return get_provider(request.param)


_shared: dict = {}


@pytest.fixture
def box(provider):
    """One long-lived default sandbox per provider, reused by the tests that leave it usable
    (a container start costs ~0.3 s; the suite would spend most of its time there)."""
    from warden.providers.base import SandboxSpec

    h = _shared.get(provider.name)
    if h is None or h._state.destroyed:
        h = _shared[provider.name] = provider.create(SandboxSpec(labels={"purpose": "suite"}))
    return h


@pytest.fixture
def fresh(provider):
    """Sandboxes made by one test, destroyed at its end: ``fresh(spec)``."""
    made = []

    def make(spec=None, **kw):
        from warden.providers.base import SandboxSpec

        h = provider.create(spec or SandboxSpec(), **kw)
        made.append(h)
        return h

    yield make
    for h in made:
        provider.destroy(h)
