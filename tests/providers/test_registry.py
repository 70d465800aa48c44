"""The provider registry: a name no provider is registered under is the caller's mistake
(InvalidArgument), not something this host lacks."""

from __future__ import annotations

import pytest
from warden import InvalidArgument
from warden.providers import registry


@pytest.mark.parametrize("name", ["nope", "", "Native", 3, None])
def test_an_unknown_provider_is_an_invalid_argument(name):
    with pytest.raises(InvalidArgument) as info:
        registry.get_provider(name)
    assert (info.value.argument, info.value.value) == ("provider", name)
    assert all(f"'{known}'" in info.value.allowed for known in registry.available())


def test_known_names_resolve():
    assert {"native", "docker"} <= set(registry.available())
    assert registry.get_provider("native").name == "native"
