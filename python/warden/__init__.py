"""warden: kernel-enforced sandboxes for untrusted code at the latency of a function call."""

from warden.errors import (
    CallFailed,
    CgroupTeardownError,
    DiskQuotaExceeded,
    ManifestError,
    MemoryLimitExceeded,
    PathEscapeError,
    PayloadTooLarge,
    PidsLimitExceeded,
    PluginError,
    ProtocolError,
    ProviderUnavailable,
    RateLimitExceeded,
    SandboxSetupError,
    ScanRejected,
    TimeoutExceeded,
    WardenError,
    WorkerCrashed,
)
from warden.limits import ExecResult, Limits
from warden.plugins import Engine, Plugin
from warden.runner import run
from warden.sandbox import Sandbox
from warden.scan import Finding, Policy, scan, scan_paths

__version__ = "0.1.0"

__all__ = [
    "CallFailed",
    "CgroupTeardownError",
    "DiskQuotaExceeded",
    "Engine",
    "ExecResult",
    "Finding",
    "Limits",
    "ManifestError",
    "MemoryLimitExceeded",
    "PathEscapeError",
    "PayloadTooLarge",
    "PidsLimitExceeded",
    "Plugin",
    "PluginError",
    "Policy",
    "ProtocolError",
    "ProviderUnavailable",
    "RateLimitExceeded",
    "SandboxSetupError",
    "Sandbox",
    "ScanRejected",
    "TimeoutExceeded",
    "WardenError",
    "WorkerCrashed",
    "run",
    "scan",
    "scan_paths",
]
