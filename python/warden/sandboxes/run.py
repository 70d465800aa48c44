"""warden.run: one command in a fresh sandbox, torn down when it ends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from warden.providers.registry import get_provider
from warden.sandboxes import checks
from warden.spec.limits import Limits
from warden.spec.network import NetworkPolicy
from warden.spec.result import DEFAULT_OUTPUT_CAP, ExecResult

__all__ = ["run"]


def run(
    argv: Sequence[str],
    *,
    stdin: bytes | str | None = None,
    limits: Limits | None = None,
    network: str | NetworkPolicy = "none",
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    provider: str = "native",
    max_output_bytes: int = DEFAULT_OUTPUT_CAP,
) -> ExecResult:
    """Run ``argv`` in a fresh sandbox and tear it down; see the README for what it isolates.

    Every argument is checked before anything runs (InvalidArgument). A command that does not
    exist or cannot be executed is not an error: it exits 127 or 126, as in a shell."""
    args = checks.argv_list(argv)
    data = checks.stdin_bytes(stdin)
    lim = checks.limits_of(limits)
    net = checks.network_policy(network)
    envs = checks.env_map(env)
    where = checks.cwd_path(cwd)
    cap = checks.output_cap(max_output_bytes)
    return get_provider(provider).run(args, stdin=data, limits=lim, network=net, env=envs,
                                      cwd=where, max_output_bytes=cap)
