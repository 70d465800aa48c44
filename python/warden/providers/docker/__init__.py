"""The Docker provider: the same sandboxes and worker protocol in containers, for hosts that
cannot give user namespaces or cgroups (extra ``warden[docker]``).

Modules: ``provider`` (DockerProvider, which imports the Docker SDK), ``images`` (warden's own
image, built from this host's Python with no registry). The program that runs inside the
container is ``warden.guest.container``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DockerProvider"]


def __getattr__(name: str) -> Any:
    if name == "DockerProvider":
        from warden.providers.docker.provider import DockerProvider

        return DockerProvider
    raise AttributeError(f"module 'warden.providers.docker' has no attribute {name!r}")
