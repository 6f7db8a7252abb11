"""Event schemas: parsing tracefs format files and decoding raw records.

Raw records here are packed by hand with struct, independently of
EventFormat.encode, so decode is checked against the layout the format file
states rather than against our own encoder.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ktapjit.events.schema import EventDecodeError, FormatError, parse_format
from ktapjit.events.errors import EventsError

FORMATS = Path(__file__).resolve().parent.parent / "data" / "formats"
ALL_CAPTURED = sorted(p.parent for p in FORMATS.glob("*/*/format"))


def load(system: str, event: str):
    return parse_format((FORMATS / system / event / "format").read_text(), system=system)


def common(event_id: int, pid: int, flags: int = 0, preempt: int = 0) -> bytes:
    return struct.pack("<HBBi", event_id, flags, preempt, pid)


# ----------------------------------------------------------------------------
# Parsing


def test_sched_switch_layout():
    ev = load("sched", "sched_switch")
    assert (ev.system, ev.name, ev.id) == ("sched", "sched_switch", 372)
    assert [f.name for f in ev.common_fields] == [
        "common_type", "common_flags", "common_preempt_count", "common_pid"]
    assert [f.name for f in ev.args()] == [
        "prev_comm", "prev_pid", "prev_prio", "prev_state", "next_comm", "next_pid", "next_prio"]
    comm = ev.field("prev_comm")
    assert (comm.type, comm.offset, comm.size, comm.array_len, comm.is_string) == ("char", 8, 16, 16, True)
    state = ev.field("prev_state")
    assert (state.type, state.size, state.signed, state.array_len) == ("long", 8, True, None)
    assert ev.field("common_type").signed is False
    assert ev.print_fmt.startswith('"prev_comm=%s prev_pid=%d')
    assert ev.fixed_size == 64


def test_integer_array_field():
    args = load("raw_syscalls", "sys_enter").field("args")
    assert (args.type, args.array_len, args.elem_size, args.is_string, args.signed) == (
        "unsigned long", 6, 8, False, False)


def test_dynamic_string_field():
    f = load("sched", "sched_process_exec").field("filename")
    assert f.type == "__data_loc char[]"
    assert (f.dynamic, f.is_string, f.array_len, f.size, f.relative) == (True, True, 0, 4, False)


def test_pointer_field_is_a_scalar():
    f = load("syscalls", "sys_enter_openat").field("filename")
    assert (f.type, f.array_len, f.is_pointer, f.size) == ("const char *", None, True, 8)
    argv = load("syscalls", "sys_enter_execve").field("argv")
    assert argv.type == "const char *const *" and argv.is_pointer


def test_print_fmt_with_raw_newlines_is_kept_whole():
    ev = load("ext4", "ext4_fc_stats")
    assert "\n" in ev.print_fmt
    assert ev.print_fmt.endswith("REC->fc_numblks")


@pytest.mark.parametrize("path", ALL_CAPTURED, ids=lambda p: f"{p.parent.name}:{p.name}")
def test_every_captured_format_parses_and_round_trips(path):
    ev = load(path.parent.name, path.name)
    assert ev.name == path.name and ev.id > 0 and ev.common_fields
    for f in ev.all_fields:
        assert f.offset + (4 if f.dynamic else f.size) <= ev.fixed_size
    values = ev.decode(ev.encode({}))
    assert values["common_type"] == ev.id
    assert ev.decode(ev.encode(values)) == values


@pytest.mark.parametrize("text, words", [
    ("", "no 'name:' line"),
    ("hello world\n", "no 'name:' line"),
    ("name: x\nformat:\n", "has no 'ID:' line"),
    ("name: x\nID: twelve\n", "bad ID"),
    ("name: x\nID: 1\nformat:\n\tfield:int a;\toffset:zero;\tsize:4;\tsigned:1;\n", "line 4"),
])
def test_format_errors_are_one_line(text, words):
    with pytest.raises(FormatError) as info:
        parse_format(text)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, EventsError)


# ----------------------------------------------------------------------------
# Decoding


def test_decode_sched_switch():
    ev = load("sched", "sched_switch")
    raw = common(ev.id, 4321, flags=1, preempt=2) + struct.pack(
        "<16siiq16sii", b"python3", 4321, -1, 0x101, b"swapper/1\0junk", 0, 120)
    assert ev.decode(raw) == dict(
        common_type=ev.id, common_flags=1, common_preempt_count=2, common_pid=4321,
        prev_comm=b"python3", prev_pid=4321, prev_prio=-1, prev_state=0x101,
        next_comm=b"swapper/1", next_pid=0, next_prio=120,
    )


def test_decode_sign_and_zero_extension():
    ev = load("raw_syscalls", "sys_exit")
    raw = common(ev.id, 1) + struct.pack("<qq", 0, -14)
    assert ev.decode(raw)["ret"] == -14
    ev = load("syscalls", "sys_enter_openat")  # int dfd; size 8, signed:0
    raw = common(ev.id, 1) + struct.pack("<i4xQQQQ", 257, 0xFFFFFF9C, 0x7FFC0000, 0x80000, 0)
    values = ev.decode(raw)
    assert values["__syscall_nr"] == 257
    assert values["dfd"] == 0xFFFFFF9C  # zero-extended, as the format says
    assert values["filename"] == 0x7FFC0000


def test_decode_integer_array():
    ev = load("raw_syscalls", "sys_enter")
    raw = common(ev.id, 1) + struct.pack("<q6Q", 0, 3, 2**64 - 1, 5, 0, 0, 9)
    assert ev.decode(raw)["args"] == [3, 2**64 - 1, 5, 0, 0, 9]


def test_decode_dynamic_string_and_trailing_padding():
    ev = load("sched", "sched_process_exec")
    name = b"/usr/bin/true\0"
    fixed = ev.fixed_size
    loc = (len(name) << 16) | fixed
    body = bytearray(common(ev.id, 7) + bytes(fixed - 8))
    struct.pack_into("<I", body, ev.field("filename").offset, loc)
    struct.pack_into("<ii", body, ev.field("pid").offset, 7, 6)
    raw = bytes(body) + name + b"\0\0\0"  # perf pads RAW to 8 bytes
    values = ev.decode(raw)
    assert values["filename"] == b"/usr/bin/true"
    assert (values["pid"], values["old_pid"]) == (7, 6)


REL_FORMAT = """name: rel_test
ID: 9
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__rel_loc char[] msg;\toffset:8;\tsize:4;\tsigned:0;
\tfield:__data_loc u32[] vals;\toffset:12;\tsize:4;\tsigned:0;
\tfield:u8 mac[6];\toffset:16;\tsize:6;\tsigned:0;

print fmt: "msg=%s", __get_rel_str(msg)
"""


def test_rel_loc_and_dynamic_int_array():
    ev = parse_format(REL_FORMAT)
    msg, vals, mac = ev.field("msg"), ev.field("vals"), ev.field("mac")
    assert msg.relative and msg.is_string and vals.dynamic and not vals.is_string
    assert vals.elem_size == 4 and mac.array_len == 6 and not mac.is_string
    # Layout: fixed part is 22 bytes; msg data at 24 (relative to 12), vals at 28.
    raw = bytearray(common(9, 1) + bytes(14)) + b"\0\0" + b"hi!\0" + struct.pack("<II", 5, 2**32 - 1)
    struct.pack_into("<I", raw, 8, (4 << 16) | (24 - 12))
    struct.pack_into("<I", raw, 12, (8 << 16) | 28)
    raw[16:22] = b"\x00\x11\x22\x33\x44\x55"
    values = ev.decode(bytes(raw))
    assert values["msg"] == b"hi!"
    assert values["vals"] == [5, 2**32 - 1]
    assert values["mac"] == [0, 0x11, 0x22, 0x33, 0x44, 0x55]
    assert ev.decode(ev.encode(values)) == values


@pytest.mark.parametrize("cut", [0, 1, 8, 20, 63])
def test_truncated_record_is_a_clear_error(cut):
    ev = load("sched", "sched_switch")
    raw = ev.encode(dict(prev_comm=b"x"))[:cut]
    with pytest.raises(EventDecodeError) as info:
        ev.decode(raw)
    message = str(info.value)
    assert message == f"sched:sched_switch: raw data is {cut} bytes, the format needs 64"


def test_dynamic_location_out_of_range_is_a_clear_error():
    ev = load("sched", "sched_process_exec")
    raw = bytearray(ev.encode(dict(filename=b"/bin/true")))
    struct.pack_into("<I", raw, ev.field("filename").offset, (200 << 16) | 10)
    with pytest.raises(EventDecodeError, match="field 'filename' points to bytes 10..210"):
        ev.decode(bytes(raw))


def test_encode_places_dynamic_data_after_the_fixed_part():
    ev = load("sched", "sched_process_exec")
    raw = ev.encode(dict(filename=b"/bin/true", pid=3, old_pid=3))
    loc = struct.unpack_from("<I", raw, ev.field("filename").offset)[0]
    assert loc & 0xFFFF == ev.fixed_size and loc >> 16 == len(b"/bin/true\0")
    assert raw[ev.fixed_size:] == b"/bin/true\0"


# ----------------------------------------------------------------------------
# Live: every format this kernel has parses

TRACEFS = Path("/sys/kernel/tracing")


def _tracefs_skip_reason() -> str | None:
    try:
        if not (TRACEFS / "events").is_dir():
            return "tracefs is not mounted at /sys/kernel/tracing"
    except PermissionError:
        return "tracefs at /sys/kernel/tracing is not readable (needs root)"
    return None


@pytest.mark.live
def test_every_live_format_parses():
    reason = _tracefs_skip_reason()
    if reason:
        pytest.skip(reason)
    from ktapjit.events.tracefs import list_events, read_format

    count = 0
    for system, event in list_events(TRACEFS):
        ev = read_format(system, event, TRACEFS)
        assert ev.name == event
        ev.decode(ev.encode({}))
        count += 1
    assert count > 100
