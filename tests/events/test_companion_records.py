"""Companion records (events/records/companion.py) and the pairing rule
(tracing/companion.py): a companion goes to the next sample of its
tracepoint on its CPU, written by the same thread; corrupt ones are stream
errors with their offset."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ktapjit.events.records import companion as record
from ktapjit.events.records.decode import DecodeError
from ktapjit.events.schema import parse_format
from ktapjit.tracing.companion import CompanionPairing, CompanionRoutes

OPENAT = 782
FILENAME = 24
COMPANION_ID, OPENAT_ID = 7, 9

FORMAT = """name: sys_enter_openat
ID: 782
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;

print fmt: "filename: 0x%08lx", ((unsigned long)(REC->filename))
"""


def item(text: bytes, pointer: int = 0x7FFF0000, result=None) -> record.Item:
    return record.Item(record.USER_STRING, FILENAME, len(text) + 1 if result is None else result, pointer, text)


def companion(cpu: int, tid: int, *items: record.Item, room: int = 64, offset: int = 0):
    return SimpleNamespace(id=COMPANION_ID, cpu=cpu, tid=tid, offset=offset,
                           raw=record.build(OPENAT, room, list(items)))


def sample(cpu: int, tid: int):
    return SimpleNamespace(id=OPENAT_ID, cpu=cpu, tid=tid, offset=0, raw=b"")


BOUND = SimpleNamespace(fmt=parse_format(FORMAT), arg_names=("__syscall_nr", "dfd", "filename", "flags", "mode"))


def user_string(pairing: CompanionPairing, records, source: str = "args.filename"):
    """What user_string(SOURCE) gives for the last record, a sample."""
    *companions, last = records
    for c in companions:
        assert pairing.keep(c)
    assert not pairing.keep(last)
    paired = pairing.take(last)
    return None if paired is None else paired.value(f"user_string {source}", BOUND)


def pairing(max_string: int = 4096) -> CompanionPairing:
    return CompanionPairing(CompanionRoutes({COMPANION_ID}, {OPENAT_ID: OPENAT}), max_string)


@pytest.mark.parametrize("records,source,value", [
    ([companion(0, 5, item(b"/etc/hostname")), sample(0, 5)], "args.filename", b"/etc/hostname"),
    ([companion(0, 5, item(b"/etc/hostname")), sample(0, 5)], "arg2", b"/etc/hostname"),
    ([companion(0, 5, item(b"/etc/hostname")), sample(0, 5)], "arg1", None),  # dfd: not read
    ([companion(0, 5, item(b"/etc/hostname")), sample(0, 5)], "args.nope", None),
    ([companion(0, 5, item(b"")), sample(0, 5)], "args.filename", b""),
    ([companion(0, 5, item(b"\xff\xfe")), sample(0, 5)], "args.filename", b"\xff\xfe"),  # bytes as read
    ([companion(0, 5, item(b"", pointer=0, result=-14)), sample(0, 5)], "args.filename", None),  # NULL
    ([companion(0, 5, item(b"", result=-14)), sample(0, 5)], "args.filename", None),  # a fault
    ([companion(1, 5, item(b"/a")), sample(0, 5)], "args.filename", None),  # another CPU's
    ([companion(0, 6, item(b"/a")), sample(0, 5)], "args.filename", None),  # another thread's
    ([companion(0, 5, item(b"/orphan")), companion(0, 5, item(b"/mine")), sample(0, 5)], "args.filename",
     b"/mine"),
])
def test_pairing_and_the_value_rules(records, source, value):
    assert user_string(pairing(), records, source) == value


def test_a_companion_is_taken_once():
    p = pairing()
    assert user_string(p, [companion(0, 5, item(b"/a")), sample(0, 5)]) == b"/a"
    assert user_string(p, [sample(0, 5)]) is None


def test_a_string_is_cut_to_max_string():
    assert user_string(pairing(max_string=3), [companion(0, 5, item(b"/etc")), sample(0, 5)]) == b"/et"


def test_the_last_strings_room_ends_after_its_nul():
    second = record.Item(record.KERNEL_STRING, 16, 5, 0xFFFF0000, b"/etc")
    raw = record.build(OPENAT, 64, [item(b"/first"), second])
    parsed = record.parse(raw[:len(raw) - 64 + 5], 0)
    assert [(i.kind, i.offset, i.text) for i in parsed.items.values()] == [
        (record.USER_STRING, FILENAME, b"/first"), (record.KERNEL_STRING, 16, b"/etc")]


def test_a_sample_without_routes_to_companions_is_not_kept():
    assert not pairing().keep(sample(0, 5))


@pytest.mark.parametrize("raw,message", [
    (b"KTC1", "corrupt companion record: 4 bytes, shorter than its header"),
    (b"KTCX" + bytes(12), "corrupt companion record: bad magic 0x5843544b"),
    (record.build(OPENAT, 8, [item(b"/a")])[:-12], "corrupt companion record: 1 items of 8 bytes do not fit in its 28 bytes"),
    (record.build(OPENAT, 8, [record.Item(9, 0, 0, 0, b"")]), "corrupt companion record: unknown item kind 9"),
])
def test_a_corrupt_companion_is_a_stream_error_with_its_offset(raw, message):
    with pytest.raises(DecodeError) as info:
        pairing().keep(SimpleNamespace(id=COMPANION_ID, cpu=0, tid=5, offset=4242, raw=raw))
    assert str(info.value) == f"{message} (at byte offset 4242)"
