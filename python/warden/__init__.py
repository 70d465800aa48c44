"""warden: kernel-enforced sandboxes for untrusted code at the latency of a function call.

The names of ``__all__`` are loaded when first used (PEP 562): ``import warden`` loads almost
nothing, so code that runs inside a sandbox (``warden.guest``) pays only for what it uses.
"""

import importlib as _importlib

# typing is not imported for this: a guest importing warden.guest.* must not pay for it.
TYPE_CHECKING = False

# name -> the module that defines it
_WHERE: dict[str, str] = {
    "CallFailed": "warden.errors",
    "CgroupTeardownError": "warden.errors",
    "DiskQuotaExceeded": "warden.errors",
    "HostResourceExhausted": "warden.errors",
    "InvalidArgument": "warden.errors",
    "ManifestError": "warden.errors",
    "MemoryLimitExceeded": "warden.errors",
    "PathEscapeError": "warden.errors",
    "PayloadTooLarge": "warden.errors",
    "PidsLimitExceeded": "warden.errors",
    "PluginError": "warden.errors",
    "ProcessNotFound": "warden.errors",
    "ProcessStdinClosed": "warden.errors",
    "ProtocolError": "warden.errors",
    "ProviderUnavailable": "warden.errors",
    "RateLimitExceeded": "warden.errors",
    "SandboxExpired": "warden.errors",
    "SandboxFileError": "warden.errors",
    "SandboxPaused": "warden.errors",
    "SandboxSetupError": "warden.errors",
    "ScanRejected": "warden.errors",
    "TimeoutExceeded": "warden.errors",
    "WardenError": "warden.errors",
    "WatchLimitExceeded": "warden.errors",
    "WorkerCrashed": "warden.errors",
    "ExecResult": "warden.spec.result",
    "Limits": "warden.spec.limits",
    "NetworkEvent": "warden.spec.network",
    "NetworkPolicy": "warden.spec.network",
    "Ceilings": "warden.plugins.ceilings",
    "Engine": "warden.plugins.engine",
    "Plugin": "warden.plugins.engine",
    "run": "warden.sandboxes.run",
    "Sandbox": "warden.sandboxes.sandbox",
    "Process": "warden.sandboxes.process",
    "Execution": "warden.sandboxes.notebook",
    "AsyncSandbox": "warden.sandboxes.asyncbox",
    "AsyncProcess": "warden.sandboxes.asyncproc",
    "AsyncTerminal": "warden.sandboxes.asyncproc",
    "Terminal": "warden.sandboxes.terminal",
    "Watch": "warden.sandboxes.watch",
    "WatchEvent": "warden.sandboxes.watch",
    "AsyncWatch": "warden.sandboxes.asyncwatch",
    "ForkServer": "warden.testing.forkserver",
    "Verdict": "warden.testing.verdict",
    "Finding": "warden.scan",
    "Policy": "warden.scan",
    "scan": "warden.scan",
    "scan_paths": "warden.scan",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> object:
    if name == "__version__":
        from warden._version import version

        value: object = version()
    elif name in _WHERE:
        module = _importlib.import_module(_WHERE[name])
        # warden.scan is the scanner's package and, called, the function scan(): the import
        # system binds the package here, so the package itself is made callable.
        value = module if name == "scan" else getattr(module, name)
    else:
        raise AttributeError(f"module 'warden' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from warden.errors import (
        CallFailed,
        CgroupTeardownError,
        DiskQuotaExceeded,
        HostResourceExhausted,
        InvalidArgument,
        ManifestError,
        MemoryLimitExceeded,
        PathEscapeError,
        PayloadTooLarge,
        PidsLimitExceeded,
        PluginError,
        ProcessNotFound,
        ProcessStdinClosed,
        ProtocolError,
        ProviderUnavailable,
        RateLimitExceeded,
        SandboxExpired,
        SandboxFileError,
        SandboxPaused,
        SandboxSetupError,
        ScanRejected,
        TimeoutExceeded,
        WardenError,
        WatchLimitExceeded,
        WorkerCrashed,
    )
    from warden.plugins.ceilings import Ceilings
    from warden.plugins.engine import Engine, Plugin
    from warden.sandboxes.asyncbox import AsyncSandbox
    from warden.sandboxes.asyncproc import AsyncProcess, AsyncTerminal
    from warden.sandboxes.asyncwatch import AsyncWatch
    from warden.sandboxes.notebook import Execution
    from warden.sandboxes.process import Process
    from warden.sandboxes.run import run
    from warden.sandboxes.sandbox import Sandbox
    from warden.sandboxes.terminal import Terminal
    from warden.sandboxes.watch import Watch, WatchEvent
    from warden.scan import Finding, Policy, scan, scan_paths
    from warden.spec.limits import Limits
    from warden.spec.network import NetworkEvent, NetworkPolicy
    from warden.spec.result import ExecResult
    from warden.testing.forkserver import ForkServer
    from warden.testing.verdict import Verdict

    __version__: str

# Not part of the face: only __all__ is public (tests/test_api.py).
del TYPE_CHECKING
