"""A sandbox's spec as a container's configuration: its Limits as the engine's options.

Memory and memory+swap equal, pids (plus warden's own init and worker tasks), CPU quota,
``--network none``, a read-only root, size-limited tmpfs for the writable areas, no new
privileges, every capability dropped, a seccomp profile generated from the native filter's
tables, and uid 1000. warden's own code and msgpack are bound read-only at LIB_DIR, so any image
with a Python 3 works.
"""

from __future__ import annotations

import functools
import os

import docker.types

from warden.spec.sandbox import SandboxSpec

__all__ = ["BOOT", "LIB_DIR", "UID_GID", "areas", "container_config", "tmpfs"]

LIB_DIR = "/opt/warden/lib"
UID_GID = "1000:1000"
# Tasks that are warden's, not the caller's, counted by the pids controller: Docker's init, and
# the worker's main thread plus its two stdio pump threads.
_OWN_TASKS = 4
# The share of the disk quota that /tmp gets; the writable areas share the rest, so the sum of
# every tmpfs is the quota.
_TMP_SHARE = 8

# Runs inside the container as `python3 -I -c BOOT <entry> <data_dir> <areas>`: warden's code is
# bound read-only at LIB_DIR; its package face loads nothing (not the native module, built for
# the host's Python), and warden.guest.container works on any Python 3.10+.
BOOT = (f"import sys; sys.path.insert(0, {LIB_DIR!r}); from warden.guest import container; "
        "container.main(sys.argv[1:])")


@functools.cache
def _lib_mounts() -> tuple:
    import msgpack

    package_dir = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.realpath(__file__))))
    return tuple(docker.types.Mount(f"{LIB_DIR}/{name}", src, type="bind", read_only=True)
                 for src, name in ((package_dir, "warden"),
                                   (os.path.dirname(os.path.realpath(msgpack.__file__)),
                                    "msgpack")))


def areas(spec: SandboxSpec) -> list[str]:
    return list(spec.writable) or ["/workspace"]


def tmpfs(spec: SandboxSpec) -> dict[str, str]:
    total_kb = spec.limits.disk_mb << 10
    tmp_kb = max(64, total_kb // _TMP_SHARE)
    writable = areas(spec)
    area_kb = max(64, (total_kb - tmp_kb) // len(writable))
    uid, gid = UID_GID.split(":")
    out = {a: f"size={area_kb}k,uid={uid},gid={gid},mode=0755,nosuid,nodev" for a in writable}
    out["/tmp"] = f"size={tmp_kb}k,mode=1777,nosuid,nodev"  # nosec B108
    return out


def _labels(spec: SandboxSpec, wid: str, reuse_key: str | None, owner: str) -> dict[str, str]:
    from warden._version import version

    labels = {k: v for k, v in spec.labels.items()}
    labels.update({"warden.id": wid, "warden.version": version(),
                   "warden.owner": owner, "warden.provider": "docker"})
    if reuse_key is not None:
        labels["warden.reuse_key"] = reuse_key
    return labels


def _ulimits(spec: SandboxSpec) -> list:
    lim = spec.limits
    ulimits = [docker.types.Ulimit(name="nofile", soft=lim.open_files, hard=lim.open_files)]
    if lim.file_size_mb:
        ulimits.append(docker.types.Ulimit(name="fsize", soft=lim.file_size_mb << 20,
                                           hard=lim.file_size_mb << 20))
    if lim.cpu_time_s:
        cpu = int(-(-lim.cpu_time_s // 1))
        ulimits.append(docker.types.Ulimit(name="cpu", soft=cpu, hard=cpu))
    return ulimits


def _host_config(api, spec: SandboxSpec) -> dict:
    from warden.host.seccomp_profile import docker_security_opt

    lim = spec.limits
    mounts = list(_lib_mounts())
    if spec.code_dir:
        mounts.append(docker.types.Mount(spec.mount_at, os.path.realpath(spec.code_dir),
                                         type="bind", read_only=True))
    return api.create_host_config(
        mem_limit=lim.memory_mb << 20,
        memswap_limit=lim.memory_mb << 20,
        pids_limit=lim.pids + _OWN_TASKS,
        nano_cpus=int(lim.cpus * 1e9),
        network_mode="none",
        read_only=True,
        tmpfs=tmpfs(spec),
        security_opt=["no-new-privileges:true", docker_security_opt(allow_inet=True)],
        cap_drop=["ALL"],
        init=True,
        ulimits=_ulimits(spec),
        mounts=mounts,
        ipc_mode="private",
        log_config=docker.types.LogConfig(type="none"),
    )


def container_config(api, spec: SandboxSpec, *, wid: str, reuse_key: str | None, owner: str,
                     image: str, name: str, proxy_env: dict[str, str] | None = None) -> dict:
    """The keyword arguments of ``api.create_container`` (docker.APIClient ``api``) for
    sandbox ``wid`` of ``spec``, labelled with its owner's id (warden.host.owner);
    ``proxy_env`` are a policy's proxy variables."""
    proxy_env = proxy_env or {}
    env = {"HOME": "/workspace", "LANG": "C.UTF-8", **proxy_env, **dict(spec.env)}
    return {
        "image": image,
        "command": ["python3", "-I", "-c", BOOT, spec.entry_point or "", spec.data_dir or "",
                    ":".join(areas(spec))],
        "entrypoint": [],
        "user": UID_GID,
        "working_dir": spec.cwd,
        "environment": env,
        "labels": _labels(spec, wid, reuse_key, owner),
        "hostname": "sandbox",
        "stdin_open": True,
        "tty": False,
        "network_disabled": True,
        "host_config": _host_config(api, spec),
        "name": name,
    }
