from __future__ import annotations

import math

import pytest
import warden
from hypothesis import given
from hypothesis import strategies as st
from warden.spec.limits import parse_size


def test_defaults_are_the_documented_ones():
    lim = warden.Limits()
    assert (lim.memory_mb, lim.pids, lim.cpus, lim.wall_time_s, lim.cpu_time_s, lim.disk_mb,
            lim.open_files, lim.file_size_mb) == (256, 64, 1.0, 10.0, None, 64, 256, None)


@pytest.mark.parametrize("field,value", [
    ("memory_mb", -1), ("memory_mb", 0), ("memory_mb", 1 << 40), ("memory_mb", 1.5),
    ("pids", 0), ("pids", -5), ("cpus", 0), ("cpus", float("nan")), ("cpus", float("inf")),
    ("wall_time_s", -1), ("wall_time_s", 0), ("cpu_time_s", 0.5), ("disk_mb", 0),
    ("open_files", 3), ("file_size_mb", 0), ("memory_mb", True), ("pids", "64"),
])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(warden.InvalidArgument, match=f"Limits.{field} takes") as info:
        warden.Limits(**{field: value})
    assert info.value.argument == field and info.value.value is value
    assert isinstance(info.value, ValueError)  # callers that caught ValueError still do


@given(st.integers(min_value=4, max_value=1 << 20), st.integers(min_value=1, max_value=1 << 22),
       st.floats(min_value=0.01, max_value=1024))
def test_valid_values_are_kept(mem, pids, cpus):
    lim = warden.Limits(memory_mb=mem, pids=pids, cpus=cpus)
    assert (lim.memory_mb, lim.pids, lim.cpus) == (mem, pids, cpus)


@pytest.mark.parametrize("text,expected", [
    ("128M", 128 << 20), ("1G", 1 << 30), ("512k", 512 << 10), ("64", 64 << 20),
    ("1.5G", int(1.5 * (1 << 30))), ("100MiB", 100 << 20), ("7B", 7),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "-1M", "12Q", "abc", "nanM", "1e999G"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        v = parse_size(text)
        assert math.isfinite(v)
