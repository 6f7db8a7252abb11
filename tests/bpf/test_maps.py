"""bpf(2) map commands against the real kernel: every map type ktapjit
uses, each element operation, freeze, info and ids, and the errors."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest
from tests.bpf.conftest import needs_bpf

from ktapjit.bpf import syscall as sc
from ktapjit.bpf.errors import BpfError, UnsupportedError
from ktapjit.bpf.objects import BpfSession, possible_cpus

pytestmark = [needs_bpf, pytest.mark.usefixtures("no_leaks")]


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


@pytest.mark.parametrize("map_type", [sc.BPF_MAP_TYPE_HASH, sc.BPF_MAP_TYPE_PERCPU_HASH])
def test_a_hash_map_updates_looks_up_deletes_and_iterates(map_type):
    with BpfSession() as s:
        m = s.create_map("t_hash", map_type, 4, 8, 16)
        for k in (3, 1, 2):
            m.update(u32(k), u64(k * 100))
        assert sorted(m.keys()) == [u32(1), u32(2), u32(3)]
        per_cpu = [u64(200)] * possible_cpus() if m.percpu else u64(200)
        assert m.lookup(u32(2)) == per_cpu
        assert sorted(m.items()) == sorted((u32(k), [u64(k * 100)] * possible_cpus() if m.percpu else u64(k * 100))
                                           for k in (1, 2, 3))
        assert m.delete(u32(2)) is True
        assert m.delete(u32(2)) is False
        assert m.lookup(u32(2)) is None
        with pytest.raises(BpfError):
            m.update(u32(1), u64(1), sc.BPF_NOEXIST)


def test_a_per_cpu_value_is_one_slot_per_possible_cpu():
    with BpfSession() as s:
        m = s.create_map("t_pcpu", sc.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 4, 2)
        values = [u32(i + 7) for i in range(possible_cpus())]
        m.update(u32(1), values)
        assert m.lookup(u32(1)) == values
        assert m.lookup(u32(0)) == [u32(0)] * possible_cpus()
        too_many = possible_cpus() + 1
        with pytest.raises(BpfError, match=f"{too_many} per-CPU values, the machine has {possible_cpus()} possible"):
            m.update(u32(0), [u32(1)] * too_many)


def test_an_array_has_every_index_and_no_other():
    with BpfSession() as s:
        m = s.create_map("t_array", sc.BPF_MAP_TYPE_ARRAY, 4, 8, 3)
        m.update(u32(2), u64(42))
        assert m.items() == [(u32(0), u64(0)), (u32(1), u64(0)), (u32(2), u64(42))]
        assert m.lookup(u32(3)) is None
        with pytest.raises(BpfError, match="BPF map update"):
            m.update(u32(3), u64(1))


def test_a_frozen_map_refuses_user_space_writes():
    with BpfSession() as s:
        m = s.create_map("t_frozen", sc.BPF_MAP_TYPE_ARRAY, 4, 8, 1)
        m.update(u32(0), u64(5))
        m.freeze()
        with pytest.raises(BpfError, match=r"BPF map update: the map is frozen \(read-only to user space\)"):
            m.update(u32(0), u64(6))
        assert m.lookup(u32(0)) == u64(5)


@pytest.mark.parametrize("map_type, key, value, entries", [
    (sc.BPF_MAP_TYPE_RINGBUF, 0, 0, 1 << 16),
    (sc.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 2),
])
def test_the_event_channel_maps_are_created(map_type, key, value, entries):
    with BpfSession() as s:
        m = s.create_map("t_channel", map_type, key, value, entries)
        info = m.info()
        assert (info.type, info.name, info.max_entries) == (map_type, b"t_channel", entries)


def test_a_map_is_found_by_id_and_its_info_names_it():
    with BpfSession() as s:
        m = s.create_map("a_long_name_cut_to_15", sc.BPF_MAP_TYPE_HASH, 8, 16, 4)
        info = m.info()
        assert (info.name, info.key_size, info.value_size) == (b"a_long_name_cut", 8, 16)
        assert info.id in sc.map_ids()
        fd = sc.fd_by_id(sc.BPF_MAP_GET_FD_BY_ID, info.id)
        try:
            assert sc.map_info(fd).id == info.id
        finally:
            os.close(fd)


@pytest.mark.parametrize("args, message", [
    ((9999, 4, 8, 1), "this kernel does not support BPF type 9999 maps"),
    ((sc.BPF_MAP_TYPE_HASH, 0, 8, 1),
     "cannot create BPF hash map 't_bad' with key size 0, value size 8, 1 entries: the kernel refuses these sizes"),
    ((sc.BPF_MAP_TYPE_ARRAY, 4, 8, 0),
     "cannot create BPF array map 't_bad' with key size 4, value size 8, 0 entries: the kernel refuses these sizes"),
])
def test_a_map_the_kernel_refuses_says_why(args, message):
    map_type, key, value, entries = args
    with BpfSession() as s, pytest.raises(BpfError) as caught:
        s.create_map("t_bad", map_type, key, value, entries)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, UnsupportedError) == (map_type == 9999)


def test_a_key_of_the_wrong_size_is_refused_before_the_kernel():
    with BpfSession() as s:
        m = s.create_map("t_sizes", sc.BPF_MAP_TYPE_HASH, 4, 8, 1)
        with pytest.raises(BpfError, match="key of 8 bytes, the map's are 4"):
            m.lookup(u64(1))


def test_without_privileges_the_message_says_what_is_needed():
    # Imports first: nobody cannot read this Python's installation.
    code = ("import os\n"
            "from ktapjit.bpf import syscall as sc\n"
            "from ktapjit.bpf.errors import BpfError\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "try: sc.map_create(sc.BPF_MAP_TYPE_HASH, 4, 8, 1, 'x')\n"
            "except BpfError as exc: print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "cannot create BPF hash map 'x': permission denied: needs root or CAP_BPF+CAP_PERFMON\n"
