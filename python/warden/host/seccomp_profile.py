"""warden's seccomp policy as a Docker/OCI seccomp profile, for the Docker provider.

The profile is generated from the same tables the native filter is compiled from
(``_core.seccomp_policy``), so both providers refuse the same calls. One thing the JSON format
cannot say: the action for a foreign architecture (i386, x32). The profile lists the native
architecture only, and the runtime picks the action for the others; runc kills the process, as
the native filter does (tests/security/test_seccomp.py checks both).
"""

from __future__ import annotations

import errno
import json
import os
import platform
from pathlib import Path
from typing import Any

from warden import _core

__all__ = [
    "docker_profile",
    "docker_security_opt",
    "native_arch",
    "policy",
    "write_docker_profile",
]

# platform.machine() -> libseccomp's architecture token in OCI profiles.
_ARCHES = {
    "x86_64": "SCMP_ARCH_X86_64",
    "amd64": "SCMP_ARCH_X86_64",
    "aarch64": "SCMP_ARCH_AARCH64",
    "arm64": "SCMP_ARCH_AARCH64",
}


def native_arch() -> str:
    """The OCI architecture token for this machine."""
    machine = platform.machine().lower()
    try:
        return _ARCHES[machine]
    except KeyError:
        from warden.errors import ProviderUnavailable

        raise ProviderUnavailable(
            f"a seccomp profile for architecture {machine!r}",
            "warden's policy is written for x86_64 and aarch64; run on one of those",
        ) from None


def policy(*, allow_inet: bool = False) -> dict[str, Any]:
    """The policy tables: allowed, denied (EPERM), errno_rules, conditional, killed_arches."""
    return _core.seccomp_policy(allow_inet)


def docker_profile(*, allow_inet: bool = False) -> dict[str, Any]:
    """A profile in Docker's format (``docker run --security-opt seccomp=<file>``).

    Refused calls are not listed: they fall to the default action, ERRNO(EPERM). runc skips a
    rule whose action equals the default, so listing them would change nothing.
    """
    tables = policy(allow_inet=allow_inet)
    syscalls: list[dict[str, Any]] = [
        {
            "names": list(tables["allowed"]),
            "action": "SCMP_ACT_ALLOW",
            "comment": "warden allowlist",
        }
    ]
    for rule in tables["errno_rules"]:
        syscalls.append(
            {
                "names": [rule["syscall"]],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": rule["errno"],
                "comment": rule["why"],
            }
        )
    # One entry per rule: the runtime adds each as its own libseccomp rule, and rules for one
    # syscall are alternatives, as in the native filter. For SCMP_CMP_MASKED_EQ the OCI format
    # puts the mask in "value" and the expected result in "valueTwo".
    for rule in tables["conditional"]:
        if rule["op"] != "masked_eq":
            raise ValueError(
                f"seccomp rule for {rule['syscall']} has unknown op {rule['op']!r}"
            )
        syscalls.append(
            {
                "names": [rule["syscall"]],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {
                        "index": rule["arg"],
                        "value": rule["mask"],
                        "valueTwo": rule["value"],
                        "op": "SCMP_CMP_MASKED_EQ",
                    }
                ],
                "comment": rule["why"],
            }
        )
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": tables["default_errno"],
        # The native architecture only: no subArchitectures, so i386 and x32 calls are not in
        # the filter and meet the runtime's bad-architecture action.
        "architectures": [native_arch()],
        "syscalls": syscalls,
    }


def docker_security_opt(*, allow_inet: bool = False) -> str:
    """The ``security_opt`` entry for the Docker API (``docker.containers.run(security_opt=[...])``).

    The API takes the profile's JSON itself, not a path: the docker CLI reads the file and inlines
    it; a client talking to the API directly must do the same.
    """
    return "seccomp=" + json.dumps(
        docker_profile(allow_inet=allow_inet), separators=(",", ":")
    )


def write_docker_profile(
    path: str | os.PathLike[str], *, allow_inet: bool = False
) -> Path:
    """Writes the profile as JSON (atomically: a reader never sees half a file)."""
    target = Path(path)
    text = (
        json.dumps(docker_profile(allow_inet=allow_inet), indent=2, sort_keys=True)
        + "\n"
    )
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, target)
    except OSError as exc:
        from warden.errors import ProviderUnavailable

        tmp.unlink(missing_ok=True)
        raise ProviderUnavailable(
            f"a seccomp profile file at {target}",
            f"writing it failed with {errno.errorcode.get(exc.errno or 0, exc.errno)}: "
            f"{exc.strerror}; choose a writable directory",
        ) from exc
    return target
