"""Untrusted YAML, parsed safely: a size cap, UTF-8 only, and a walk over the event stream
before any value is built that refuses anchors and aliases (no "billion laughs"), explicit
tags other than the plain ones, duplicate keys, deep nesting and too many nodes. Then PyYAML's
safe loader builds plain values. Every refusal is a ManifestError naming what was refused."""

from __future__ import annotations

import re
from typing import Any

import yaml

from warden.errors import ManifestError

__all__ = ["MAX_DEPTH", "MAX_EVENTS", "key_name", "load"]

MAX_EVENTS = 10_000
MAX_DEPTH = 16


def key_name(key: object) -> str:
    """A key as a field name in an error: plain keys as they are, anything else quoted."""
    if isinstance(key, str) and re.fullmatch(r"[\w.-]+", key):
        return key
    return repr(key)


def load(text: str | bytes, *, source: str, max_bytes: int) -> Any:
    """The one YAML document in ``text`` (at most ``max_bytes``) as plain values; errors
    name ``source``."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) > max_bytes:
            raise ManifestError("(document)", f"{len(text)} bytes",
                                f"at most {max_bytes} bytes", source)
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError("(document)", f"invalid UTF-8 at byte {exc.start}",
                                "UTF-8 text", source) from exc
    if not isinstance(text, str):
        raise ManifestError("(document)", type(text).__name__, "YAML text", source)
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ManifestError("(document)", f"{len(text)} characters",
                            f"at most {max_bytes} bytes", source)
    _precheck(text, source)
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError("(document)", _problem(exc), "valid YAML", source) from exc
    except (ValueError, OverflowError) as exc:
        # A scalar YAML types that Python cannot build: an integer of over 4,300 digits, a
        # date such as 2020-13-45.
        raise ManifestError("(document)", f"a value Python cannot represent ({_short(exc)})",
                            "numbers and dates in range; quote a value to keep it a string",
                            source) from exc
    except RecursionError as exc:  # pragma: no cover - _precheck bounds the depth first
        raise ManifestError("(document)", "nesting too deep", "a shallow document",
                            source) from exc
    return data


_PLAIN_TAGS = frozenset({None, "!", "tag:yaml.org,2002:str", "tag:yaml.org,2002:int",
                         "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
                         "tag:yaml.org,2002:null", "tag:yaml.org,2002:map",
                         "tag:yaml.org,2002:seq"})


def _precheck(text: str, source: str) -> None:
    """Walk the event stream before anything is constructed: refuse aliases and anchors (the
    YAML bomb needs them), explicit tags, deep nesting and documents with too many nodes."""
    depth = 0
    count = 0
    docs = 0
    # One entry per open collection: the keys seen so far for a mapping (None for a sequence)
    # and whether the next node is a key. Duplicate keys are refused here because PyYAML would
    # silently keep the last one, and two readers of one file could then disagree on a limit.
    stack: list[list] = []
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                stack.pop()
                depth -= 1
                _after_node(stack)
                continue
            if stack and stack[-1][0] is not None and stack[-1][1] and isinstance(
                    event, yaml.NodeEvent):
                if not isinstance(event, yaml.ScalarEvent):
                    raise ManifestError("(document)", f"a non-scalar mapping key at line "
                                        f"{_line(event)}",
                                        "plain keys such as name or max_memory_mb", source)
                if event.value in stack[-1][0]:
                    raise ManifestError(key_name(event.value), f"given twice (line "
                                        f"{_line(event)})",
                                        "each key once per mapping", source)
                stack[-1][0].add(event.value)
            count += 1
            if count > MAX_EVENTS:
                raise ManifestError("(document)", f"more than {MAX_EVENTS} YAML nodes",
                                    "a small document", source)
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ManifestError("(document)", f"YAML anchor/alias at line "
                                    f"{_line(event)}",
                                    "plain YAML without anchors (&) and aliases (*)", source)
            tag = getattr(event, "tag", None)
            if tag not in _PLAIN_TAGS:
                raise ManifestError("(document)", f"YAML tag {tag} at line "
                                    f"{_line(event)}",
                                    "plain YAML without explicit tags", source)
            if isinstance(event, yaml.DocumentStartEvent):
                docs += 1
                if docs > 1:
                    raise ManifestError("(document)", "several YAML documents",
                                        "exactly one document", source)
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ManifestError("(document)", f"nesting deeper than {MAX_DEPTH}",
                                        "a shallow document", source)
                stack.append([set() if isinstance(event, yaml.MappingStartEvent) else None,
                              True])
            elif isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
                _after_node(stack)
    except yaml.YAMLError as exc:
        raise ManifestError("(document)", _problem(exc), "valid YAML", source) from exc


def _line(event: yaml.Event) -> int:
    mark = event.start_mark
    return 0 if mark is None else mark.line + 1


def _after_node(stack: list[list]) -> None:
    """A whole node ended: inside a mapping, keys and values alternate."""
    if stack and stack[-1][0] is not None:
        stack[-1][1] = not stack[-1][1]


def _short(exc: BaseException) -> str:
    text = str(exc).partition(";")[0]
    return text if len(text) <= 100 else text[:97] + "..."


def _problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return problem
