"""The environment a zygote-forked worker runs with, seen from inside real sandboxes: a
plugin's code and ``Sandbox.call`` code get the sandbox's variables (PATH, HOME, LANG and the
caller's), never the zygote's, in os.environ and in what they start."""

from __future__ import annotations

import pytest
import warden
from warden.host.environ import sandbox_path

from tests.plugins.test_plugins import make_plugin, native_ok

ENV_PLUGIN = """
    import os

    def handle(action, payload):
        return dict(os.environ)
"""


@pytest.fixture
def engine():
    native_ok()
    e = warden.Engine()
    yield e
    e.close()


def test_a_plugin_sees_its_manifest_env_and_home_in_its_data_area(tmp_path, engine):
    d = make_plugin(tmp_path, "envp", ENV_PLUGIN, allowed_imports=["os"],
                    env={"MODE": "fast", "RETRIES": 3})
    seen = engine.load(d).call("env")
    assert seen == {"PATH": sandbox_path(), "HOME": "/plugin/data", "LANG": "C.UTF-8",
                    "MODE": "fast", "RETRIES": "3"}


def test_home_is_where_a_plugin_can_write(tmp_path, engine):
    d = make_plugin(tmp_path, "homep", """
        import os

        def handle(action, payload):
            path = os.path.expanduser("~/state.txt")
            with open(path, "w") as f:
                f.write(payload)
            return path, open(path).read()
    """, allowed_imports=["os"])
    assert engine.load(d).call("save", "kept") == ["/plugin/data/state.txt", "kept"]


def test_sandbox_call_code_sees_the_sandbox_env():
    native_ok()
    with warden.Sandbox(env={"FOO": "bar"}) as sb:
        seen = sb.call("def environ(_):\n    import os\n    return dict(os.environ)\n")
        assert seen == {"PATH": sandbox_path(), "HOME": "/workspace", "LANG": "C.UTF-8",
                        "FOO": "bar"}
        # What the code starts inherits it too: the C environment, not only os.environ.
        out = sb.call("def child_env(_):\n    import subprocess\n"
                      "    return subprocess.run(['env'], capture_output=True).stdout\n")
        assert sorted(out.decode().split()) == sorted(
            [f"PATH={sandbox_path()}", "HOME=/workspace", "LANG=C.UTF-8", "FOO=bar"])
