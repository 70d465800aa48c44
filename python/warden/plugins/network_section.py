"""The ``network:`` section of plugin.yaml: ``none`` or ``{allow: [...], deny: [...]}`` (the
rules of warden.NetworkPolicy). Anything else is a ManifestError naming the field."""

from __future__ import annotations

from collections.abc import Mapping

from warden.errors import InvalidArgument, ManifestError
from warden.spec.limits import NETWORK_POLICIES
from warden.spec.network import NetworkPolicy

__all__ = ["network_section"]

_KEYS = ("allow", "deny")
_SHAPE = "'none' or a mapping {allow: [rules], deny: [rules]}"


def _short(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def network_section(value: object) -> str | NetworkPolicy:
    if isinstance(value, str) and value in NETWORK_POLICIES:
        return value
    if not isinstance(value, Mapping) or not value or not set(value) <= set(_KEYS):
        raise ManifestError("network", _short(value), _SHAPE)
    lists = {}
    for key in _KEYS:
        rules = value.get(key, [])
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            raise ManifestError(f"network.{key}", _short(rules), "a list of rules such as "
                                "api.example.com:443 or *.pypi.org")
        lists[key] = tuple(rules)
    try:
        return NetworkPolicy(allow=lists["allow"], deny=lists["deny"])
    except InvalidArgument as exc:
        field = "network.allow" if exc.value in lists["allow"] else "network.deny"
        raise ManifestError(field, _short(exc.value), exc.allowed) from None
