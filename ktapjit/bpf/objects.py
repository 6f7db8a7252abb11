"""Owned kernel objects: a Map or a Program holds one fd and closes it; a
BpfSession owns everything it creates and closes it all on every exit path
(``with BpfSession() as s: ...``), so a failed load or an exception leaks no
fd, and no program of ours outlives the session."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

from ktapjit.bpf import syscall as sc
from ktapjit.bpf.errors import BpfError

PERCPU_TYPES = frozenset({sc.BPF_MAP_TYPE_PERCPU_HASH, sc.BPF_MAP_TYPE_PERCPU_ARRAY})


@lru_cache(maxsize=1)
def possible_cpus() -> int:
    """How many values a per-CPU map holds per key: the kernel sizes them by
    the possible CPUs (``0-3`` or ``0,2-5``), not the online ones."""
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    highest = 0
    for part in text.split(","):
        highest = max(highest, int(part.split("-")[-1]))
    return highest + 1


class _Owned:
    """One fd, closed once."""

    fd: int

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def live_fd(self) -> int:
        if self.fd < 0:
            raise BpfError(f"BPF object '{self.name}' is closed")
        return self.fd


@dataclass(eq=False)
class Map(_Owned):
    """A BPF map. Keys and values are bytes of the map's sizes. A per-CPU
    map's lookup gives one value per possible CPU; its update takes them all."""

    fd: int
    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int

    @property
    def percpu(self) -> bool:
        return self.map_type in PERCPU_TYPES

    @property
    def slot(self) -> int:
        """Bytes one per-CPU value takes in a lookup buffer (8-aligned)."""
        return (self.value_size + 7) & ~7

    @property
    def read_size(self) -> int:
        return self.slot * possible_cpus() if self.percpu else self.value_size

    def lookup(self, key: bytes) -> bytes | list[bytes] | None:
        raw = sc.map_lookup(self.live_fd(), self._key(key), self.read_size)
        return None if raw is None else self._values(raw)

    def update(self, key: bytes, value: bytes | list[bytes], flags: int = sc.BPF_ANY) -> None:
        if self.percpu:
            if isinstance(value, bytes):
                value = [value] * possible_cpus()
            if len(value) != possible_cpus():  # the kernel reads one slot per possible CPU
                raise BpfError(f"BPF map '{self.name}': {len(value)} per-CPU values, "
                               f"the machine has {possible_cpus()} possible CPUs")
            raw = b"".join(self._value(v).ljust(self.slot, b"\0") for v in value)
        else:
            raw = self._value(value)
        sc.map_update(self.live_fd(), self._key(key), raw, flags)

    def delete(self, key: bytes) -> bool:
        return sc.map_delete(self.live_fd(), self._key(key))

    def keys(self) -> list[bytes]:
        """Every key, in the kernel's order."""
        out, key = [], None
        while (key := sc.map_next_key(self.live_fd(), key, self.key_size)) is not None:
            out.append(key)
        return out

    def items(self) -> list[tuple[bytes, bytes | list[bytes]]]:
        """Every (key, value): one batch lookup where the kernel has it, else key by key."""
        if self.map_type in (sc.BPF_MAP_TYPE_HASH, sc.BPF_MAP_TYPE_PERCPU_HASH,
                             sc.BPF_MAP_TYPE_ARRAY, sc.BPF_MAP_TYPE_PERCPU_ARRAY):
            batch = sc.map_lookup_batch(self.live_fd(), self.key_size, self.read_size,
                                        max(1, min(self.max_entries, 4096)))
            if batch is not None:
                return [(k, self._values(v)) for k, v in batch]
        found = ((key, self.lookup(key)) for key in self.keys())
        return [(k, v) for k, v in found if v is not None]

    def freeze(self) -> None:
        sc.map_freeze(self.live_fd())

    def info(self) -> sc.MapInfo:
        return sc.map_info(self.live_fd())

    def _values(self, raw: bytes) -> bytes | list[bytes]:
        if not self.percpu:
            return raw
        return [raw[i * self.slot:i * self.slot + self.value_size] for i in range(possible_cpus())]

    def _key(self, key: bytes) -> bytes:
        if len(key) != self.key_size:
            raise BpfError(f"BPF map '{self.name}': key of {len(key)} bytes, the map's are {self.key_size}")
        return key

    def _value(self, value: bytes) -> bytes:
        if len(value) != self.value_size:
            raise BpfError(f"BPF map '{self.name}': value of {len(value)} bytes, the map's are {self.value_size}")
        return value


@dataclass(eq=False)
class Program(_Owned):
    """A loaded BPF program."""

    fd: int
    name: str
    prog_type: int

    def info(self) -> sc.ProgInfo:
        return sc.prog_info(self.live_fd())[0]

    @property
    def id(self) -> int:
        return self.info().id

    def map_ids(self) -> list[int]:
        return sc.prog_info(self.live_fd())[1]


@dataclass(eq=False)
class BpfSession:
    """The owner of every map and program of one run. ``close()`` closes them
    all (programs first: a program holds its maps), is safe to call twice,
    and runs on any exit from ``with``."""

    maps: list[Map] = field(default_factory=list)
    programs: list[Program] = field(default_factory=list)

    def create_map(self, name: str, map_type: int, key_size: int, value_size: int,
                   max_entries: int, flags: int = 0) -> Map:
        fd = sc.map_create(map_type, key_size, value_size, max_entries, name, flags)
        made = Map(fd, name, map_type, key_size, value_size, max_entries)
        self.maps.append(made)
        return made

    def load_program(self, name: str, prog_type: int, insns: bytes, license: str = "GPL") -> Program:
        fd = sc.prog_load(prog_type, insns, name, license)
        loaded = Program(fd, name, prog_type)
        self.programs.append(loaded)
        return loaded

    def close(self) -> None:
        for owned in [*reversed(self.programs), *reversed(self.maps)]:
            owned.close()
        self.programs.clear()
        self.maps.clear()

    def __enter__(self) -> "BpfSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
