"""The Docker provider: the same sandboxes and worker protocol in containers, for hosts that
cannot give user namespaces or cgroups (extra ``warden[docker]``).

Modules: ``provider`` (DockerProvider, which imports the Docker SDK: life cycle and requests),
``state`` (DockerState, what it knows of one sandbox), ``link`` (frames over a container's
attached stdio), ``config`` (a spec's Limits as container options), ``reconcile`` (containers
of this and other warden processes, exits, idle removal, the background thread), ``images``
(warden's own image, built from this host's Python with no registry). The program that runs
inside the container is ``warden.guest.container``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DockerProvider"]


def __getattr__(name: str) -> Any:
    if name == "DockerProvider":
        from warden.providers.docker.provider import DockerProvider

        return DockerProvider
    raise AttributeError(f"module 'warden.providers.docker' has no attribute {name!r}")
