"""The public API is exactly warden.__all__, and importing warden imports no optional SDK."""

from __future__ import annotations

import subprocess
import sys

import warden

PUBLIC = {
    "run", "Limits", "ExecResult", "Sandbox", "WardenError", "SandboxSetupError",
    "ProviderUnavailable", "ScanRejected", "ManifestError", "PathEscapeError", "PayloadTooLarge",
    "ProtocolError", "RateLimitExceeded", "CallFailed", "TimeoutExceeded", "MemoryLimitExceeded",
    "DiskQuotaExceeded", "PidsLimitExceeded", "WorkerCrashed", "PluginError", "InvalidArgument",
    "HostResourceExhausted", "SandboxFileError", "ForkServer", "Verdict",
    "SandboxPaused", "SandboxExpired",
}


def test_all_names_exist():
    for name in warden.__all__:
        assert hasattr(warden, name), name


def test_public_names_are_in_all():
    assert PUBLIC <= set(warden.__all__)
    public_attrs = {n for n in dir(warden) if not n.startswith("_")}
    modules = {n for n in public_attrs if type(getattr(warden, n)).__name__ == "module"}
    assert public_attrs - modules == set(warden.__all__)


def test_errors_share_one_root():
    for name in warden.__all__:
        obj = getattr(warden, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, warden.WardenError), name


def test_importing_warden_does_not_import_docker():
    code = "import sys, warden; print('docker' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
