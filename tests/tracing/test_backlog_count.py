"""Counting the samples of a backlog a stop cut off (tracing/live.py
_count_samples): by runs of one record size where it can, always exactly
what a walk record by record counts."""

from __future__ import annotations

import random
import struct

import pytest

from ktapjit.tracing.live import _count_samples

SAMPLE, COMM, MMAP2 = 9, 3, 10


@pytest.fixture(autouse=True)
def engine():
    """No engine runs here (conftest's would run each case twice)."""


def record(kind: int, size: int) -> bytes:
    return struct.pack("<IHH", kind, 0, size) + bytes(size - 8)


def walk(data: bytes) -> int:
    count, pos = 0, 0
    while pos < len(data):
        kind, size = struct.unpack_from("<IxxH", data, pos)
        count += kind == SAMPLE
        pos += size
    return count


def _runs(seed: int) -> bytes:
    rng = random.Random(seed)
    return b"".join(record(SAMPLE, 96) * rng.randint(1, 300) + record(COMM, 40) for _ in range(300))


def _mixed(seed: int) -> bytes:
    rng = random.Random(seed)
    return b"".join(record(rng.choice([SAMPLE, SAMPLE, COMM, MMAP2]), rng.choice([32, 40, 96, 264, 4096]))
                    for _ in range(5000))


STREAMS = {
    "empty": b"",
    "one sample": record(SAMPLE, 32),
    "uniform samples": record(SAMPLE, 96) * 100_000,
    "uniform, then other records of the same size": record(SAMPLE, 48) * 1000 + record(COMM, 48) * 7,
    "sizes above 255": record(SAMPLE, 1000) * 500 + record(SAMPLE, 0x108) * 9,
    "a type above 255, same size": record(SAMPLE, 24) * 20 + record(0x109, 24) * 20,
    "runs between side-band records": _runs(1),
    "mixed sizes and types": _mixed(2),
}


@pytest.mark.parametrize("name", list(STREAMS))
def test_count_agrees_with_a_walk(name):
    data = STREAMS[name]
    assert _count_samples([(0, data), (1, data)]) == 2 * walk(data)


def test_a_broken_header_ends_the_count():
    assert _count_samples([(0, record(SAMPLE, 16) * 3 + struct.pack("<IHH", SAMPLE, 0, 0) + bytes(8))]) == 3
