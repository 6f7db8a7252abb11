"""The record decoder: every sample_type bit, every record type, and errors.

Records here are built by hand from the kernel's documented layout
(include/uapi/linux/perf_event.h), independently of the decoder; real records
are checked against `perf script` in test_perfdata.py.
"""

from __future__ import annotations

import errno
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ktapjit.events.records import perf_abi as abi
from ktapjit.events.records.decode import (AttrInfo, AttrTable, Comm, DecodeError, Exit,
                                   FinishedRound, Fork, Lost, LostSamples, Mmap, Mmap2,
                                   Read, Sample, Switch, Throttle, Unknown, iter_headers,
                                   iter_records)

DATA = Path(__file__).resolve().parent.parent / "data"

TRACEPOINT_ST = (abi.PERF_SAMPLE_IDENTIFIER | abi.PERF_SAMPLE_TID | abi.PERF_SAMPLE_TIME
                 | abi.PERF_SAMPLE_CPU | abi.PERF_SAMPLE_PERIOD | abi.PERF_SAMPLE_RAW)


def record(rtype: int, body: bytes, misc: int = 0) -> bytes:
    assert len(body) % 8 == 0, "records are u64 aligned"
    return struct.pack("<IHH", rtype, misc, 8 + len(body)) + body


def q(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


def raw_field(data: bytes) -> bytes:
    # u32 size + data, padded so the pair is u64 aligned; size includes the pad.
    pad = (-(4 + len(data))) % 8
    return struct.pack("<I", len(data) + pad) + data + bytes(pad)


def trailer(pid=11, tid=12, time=1000, cpu=1, ident=77) -> bytes:
    # sample_id for TID|TIME|CPU|IDENTIFIER (no ID/STREAM_ID): kernel order.
    return struct.pack("<IIQII", pid, tid, time, cpu, 0) + q(ident)


def tracepoint_sample(ident=77, pid=11, tid=12, time=1000, cpu=1, period=1,
                      raw=b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c") -> bytes:
    body = q(ident) + struct.pack("<II", pid, tid) + q(time) + struct.pack("<II", cpu, 0)
    body += q(period) + raw_field(raw)
    return record(abi.PERF_RECORD_SAMPLE, body)


TP_TABLE = AttrTable({77: (TRACEPOINT_ST, 0, True)})


def test_tracepoint_sample():
    rec, = iter_records(tracepoint_sample(), TP_TABLE)
    assert isinstance(rec, Sample)
    assert (rec.id, rec.pid, rec.tid, rec.time, rec.cpu, rec.period) == (77, 11, 12, 1000, 1, 1)
    # 4 (size) + 12 bytes is already u64 aligned: no pad.
    assert rec.raw == b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c"
    assert rec.ip is None and rec.callchain is None and rec.stream_id is None
    assert rec.offset == 0 and rec.size == 8 + 8 * 5 + 16


def test_every_sample_bit_in_kernel_order():
    st_all = (abi.PERF_SAMPLE_IDENTIFIER | abi.PERF_SAMPLE_IP | abi.PERF_SAMPLE_TID
              | abi.PERF_SAMPLE_TIME | abi.PERF_SAMPLE_ADDR | abi.PERF_SAMPLE_ID
              | abi.PERF_SAMPLE_STREAM_ID | abi.PERF_SAMPLE_CPU | abi.PERF_SAMPLE_PERIOD
              | abi.PERF_SAMPLE_READ | abi.PERF_SAMPLE_CALLCHAIN | abi.PERF_SAMPLE_RAW
              | abi.PERF_SAMPLE_BRANCH_STACK | abi.PERF_SAMPLE_REGS_USER
              | abi.PERF_SAMPLE_STACK_USER | abi.PERF_SAMPLE_WEIGHT
              | abi.PERF_SAMPLE_DATA_SRC | abi.PERF_SAMPLE_TRANSACTION
              | abi.PERF_SAMPLE_REGS_INTR | abi.PERF_SAMPLE_PHYS_ADDR
              | abi.PERF_SAMPLE_CGROUP | abi.PERF_SAMPLE_DATA_PAGE_SIZE
              | abi.PERF_SAMPLE_CODE_PAGE_SIZE | abi.PERF_SAMPLE_AUX)
    rf = abi.PERF_FORMAT_TOTAL_TIME_ENABLED | abi.PERF_FORMAT_ID | abi.PERF_FORMAT_LOST
    info = AttrInfo(st_all, rf, True, branch_sample_type=abi.PERF_SAMPLE_BRANCH_HW_INDEX,
                    sample_regs_user=0b1011, sample_regs_intr=0b11)
    body = q(5)                                   # IDENTIFIER
    body += q(0xFFFFFFFF81000010)                 # IP
    body += struct.pack("<II", 100, 101)          # TID
    body += q(123456789)                          # TIME
    body += q(0xDEAD)                             # ADDR
    body += q(5)                                  # ID
    body += q(9)                                  # STREAM_ID
    body += struct.pack("<II", 3, 0)              # CPU
    body += q(1000)                               # PERIOD
    body += q(42, 7000, 5, 2)                     # READ: value, enabled, id, lost
    body += q(3, abi.PERF_CONTEXT_KERNEL, 0x10, 0x20)  # CALLCHAIN
    body += raw_field(b"abc")                     # RAW
    body += q(2, 99) + q(1, 2, 3, 4, 5, 6)        # BRANCH_STACK: nr, hw_idx, entries
    body += q(2, 10, 11, 12)                      # REGS_USER: abi 64, 3 regs
    body += q(16) + b"0123456789abcdef" + q(8)    # STACK_USER: size, data, dyn_size
    body += q(31)                                 # WEIGHT
    body += q(32)                                 # DATA_SRC
    body += q(33)                                 # TRANSACTION
    body += q(2, 20, 21)                          # REGS_INTR
    body += q(34)                                 # PHYS_ADDR
    body += q(35)                                 # CGROUP
    body += q(4096)                               # DATA_PAGE_SIZE
    body += q(8192)                               # CODE_PAGE_SIZE
    body += q(8) + b"AUXDATA!"                    # AUX
    rec, = iter_records(record(abi.PERF_RECORD_SAMPLE, body, misc=1),
                        AttrTable({5: info}))
    assert (rec.id, rec.ip, rec.pid, rec.tid, rec.time) == (5, 0xFFFFFFFF81000010, 100, 101, 123456789)
    assert (rec.addr, rec.stream_id, rec.cpu, rec.period) == (0xDEAD, 9, 3, 1000)
    assert rec.read.values == ((42, 5, 2),) and rec.read.time_enabled == 7000
    assert rec.read.time_running is None
    assert rec.callchain == (abi.PERF_CONTEXT_KERNEL, 0x10, 0x20)
    assert rec.raw == b"abc\0"  # the size field counts the pad byte
    assert rec.branch_stack == ((1, 2, 3), (4, 5, 6))
    assert rec.regs_user == (2, 10, 11, 12)
    assert rec.stack_user == b"01234567"           # cut to dyn_size
    assert (rec.weight, rec.data_src, rec.transaction) == (31, 32, 33)
    assert rec.regs_intr == (2, 20, 21)
    assert (rec.phys_addr, rec.cgroup) == (34, 35)
    assert (rec.data_page_size, rec.code_page_size) == (4096, 8192)
    assert rec.aux == b"AUXDATA!"
    assert rec.misc == 1


def test_group_read_and_regs_abi_none():
    st_ = abi.PERF_SAMPLE_IDENTIFIER | abi.PERF_SAMPLE_READ | abi.PERF_SAMPLE_REGS_USER
    rf = abi.PERF_FORMAT_GROUP | abi.PERF_FORMAT_TOTAL_TIME_RUNNING | abi.PERF_FORMAT_ID
    body = q(1) + q(2, 500, 10, 1, 20, 2) + q(0)  # regs abi NONE: no registers
    rec, = iter_records(record(abi.PERF_RECORD_SAMPLE, body),
                        AttrTable({1: AttrInfo(st_, rf, False, sample_regs_user=0xff)}))
    assert rec.read.values == ((10, 1, None), (20, 2, None))
    assert rec.read.time_running == 500
    assert rec.regs_user == (0,)


def test_single_attr_needs_no_id():
    st_ = abi.PERF_SAMPLE_TID | abi.PERF_SAMPLE_TIME | abi.PERF_SAMPLE_RAW
    body = struct.pack("<II", 5, 6) + q(77) + raw_field(b"xyzw")
    rec, = iter_records(record(abi.PERF_RECORD_SAMPLE, body), AttrTable.single((st_, 0, False)))
    assert (rec.id, rec.pid, rec.tid, rec.time, rec.raw) == (None, 5, 6, 77, b"xyzw")


def test_id_position_without_identifier():
    # PERF_SAMPLE_ID after IP/TID/TIME: perf's id_pos, used for several attrs.
    a = abi.PERF_SAMPLE_IP | abi.PERF_SAMPLE_TID | abi.PERF_SAMPLE_TIME | abi.PERF_SAMPLE_ID | abi.PERF_SAMPLE_CPU
    b = a | abi.PERF_SAMPLE_PERIOD
    table = AttrTable({1: (a, 0, True), 2: (b, 0, True)})
    s1 = record(9, q(0x400) + struct.pack("<II", 1, 1) + q(10) + q(1) + struct.pack("<II", 0, 0))
    s2 = record(9, q(0x500) + struct.pack("<II", 2, 2) + q(20) + q(2) + struct.pack("<II", 1, 0) + q(7))
    # A COMM with a trailer TID, TIME, ID, CPU: the id is 2 words from the end.
    comm = record(3, struct.pack("<II", 3, 3) + b"sh\0\0\0\0\0\0"
                  + struct.pack("<II", 3, 3) + q(30) + q(2) + struct.pack("<II", 1, 0))
    r1, r2, r3 = iter_records(s1 + s2 + comm, table)
    assert (r1.id, r1.period, r1.time) == (1, None, 10)
    assert (r2.id, r2.period, r2.cpu) == (2, 7, 1)
    assert (r3.comm, r3.time, r3.cpu) == (b"sh", 30, 1)


def test_non_sample_records_with_trailers():
    t = trailer()
    recs = b"".join([
        record(3, struct.pack("<II", 11, 12) + b"python3\0" + t, misc=abi.PERF_RECORD_MISC_COMM_EXEC),
        record(7, struct.pack("<IIII", 20, 11, 21, 12) + q(900) + t),
        record(4, struct.pack("<IIII", 20, 11, 21, 12) + q(950) + t),
        record(2, q(77, 1234) + t),
        record(13, q(55) + t),
        record(5, q(960, 77, 78) + t),
        record(6, q(970, 77, 78) + t),
        record(1, struct.pack("<II", 11, 12) + q(0x1000, 0x2000, 0) + b"/bin/ls\0" + t, misc=2),
        record(10, struct.pack("<II", 11, 12) + q(0x1000, 0x2000, 0x10) + struct.pack("<II", 8, 1)
               + q(4242, 7) + struct.pack("<II", 5, 2) + b"/usr/lib/libc.so.6\0\0\0\0\0\0" + t),
        record(10, struct.pack("<II", 11, 12) + q(0x1000, 0x2000, 0)
               + struct.pack("<BBH", 4, 0, 0) + b"\xaa\xbb\xcc\xdd" + bytes(16)
               + struct.pack("<II", 5, 2) + b"[vdso]\0\0" + t, misc=abi.PERF_RECORD_MISC_MMAP_BUILD_ID),
        record(14, t, misc=abi.PERF_RECORD_MISC_SWITCH_OUT),
        record(15, struct.pack("<II", 30, 31) + t),
        record(17, q(1, 2, 3) + t),                      # KSYMBOL: kept as Unknown
        record(68, b""),                                  # FINISHED_ROUND
    ])
    out = list(iter_records(recs, TP_TABLE))
    comm, fork, exit_, lost, lost_s, thr, unthr, mmap_, mmap2, mmap2b, sw, swc, ks, fr = out
    assert comm == Comm(11, 12, b"python3", 1000, 1, True, offset=0, size=56)
    # FORK/EXIT bodies carry a time of their own (900, 950), but perf orders and
    # prints them by the sample_id trailer's time, and so do we.
    assert isinstance(fork, Fork) and (fork.pid, fork.ppid, fork.tid, fork.ptid, fork.time) == (20, 11, 21, 12, 1000)
    assert isinstance(exit_, Exit) and exit_.time == 1000 and exit_.cpu == 1
    assert isinstance(lost, Lost) and (lost.id, lost.lost, lost.time, lost.cpu) == (77, 1234, 1000, 1)
    assert isinstance(lost_s, LostSamples) and (lost_s.lost, lost_s.id) == (55, 77)
    assert isinstance(thr, Throttle) and (thr.time, thr.id, thr.stream_id, thr.unthrottle) == (960, 77, 78, False)
    assert unthr.unthrottle and unthr.time == 970
    assert isinstance(mmap_, Mmap) and (mmap_.addr, mmap_.len, mmap_.filename) == (0x1000, 0x2000, b"/bin/ls")
    assert isinstance(mmap2, Mmap2) and (mmap2.maj, mmap2.min, mmap2.ino, mmap2.ino_generation) == (8, 1, 4242, 7)
    assert (mmap2.prot, mmap2.flags, mmap2.filename, mmap2.build_id) == (5, 2, b"/usr/lib/libc.so.6", None)
    assert mmap2b.build_id == b"\xaa\xbb\xcc\xdd" and mmap2b.ino is None and mmap2b.filename == b"[vdso]"
    assert isinstance(sw, Switch) and sw.out and sw.next_prev_pid is None
    assert isinstance(swc, Switch) and (swc.next_prev_pid, swc.next_prev_tid, swc.out) == (30, 31, False)
    assert isinstance(ks, Unknown) and ks.type == 17 and ks.data == q(1, 2, 3) and ks.time == 1000
    assert isinstance(fr, FinishedRound)
    # Offsets chain: each record starts where the previous one ended.
    for a, b in zip(out, out[1:]):
        assert b.offset == a.offset + a.size


def test_read_record():
    table = AttrTable({77: AttrInfo(TRACEPOINT_ST, abi.PERF_FORMAT_ID, True)})
    rec, = iter_records(record(8, struct.pack("<II", 1, 2) + q(99, 77) + trailer()), table)
    assert isinstance(rec, Read) and rec.values.values == ((99, 77, None),)


def test_base_offset_is_added():
    buf = tracepoint_sample() + tracepoint_sample(time=2000)
    recs = list(iter_records(buf, TP_TABLE, base=4096))
    assert [r.offset for r in recs] == [4096, 4096 + len(buf) // 2]
    with pytest.raises(DecodeError) as e:
        list(iter_records(buf[:-3], TP_TABLE, base=4096))
    assert e.value.offset == 4096 + len(buf) // 2


# --- errors ----------------------------------------------------------------------------

def test_zero_size_header_is_an_error_not_a_hang():
    buf = tracepoint_sample() + struct.pack("<IHH", 9, 0, 0) + bytes(40)
    with pytest.raises(DecodeError) as e:
        list(iter_records(buf, TP_TABLE))
    assert e.value.offset == len(tracepoint_sample())
    assert "smaller than its header" in str(e.value)
    with pytest.raises(DecodeError):
        list(iter_headers(buf))


@pytest.mark.parametrize("cut", [1, 7, 8, 20, 60])
def test_truncated(cut):
    buf = tracepoint_sample() + tracepoint_sample()
    with pytest.raises(DecodeError) as e:
        list(iter_records(buf[:len(buf) - cut], TP_TABLE))
    assert e.value.offset == len(buf) // 2
    assert "offset" in str(e.value)


def test_field_running_past_the_record():
    st_ = abi.PERF_SAMPLE_IDENTIFIER | abi.PERF_SAMPLE_CALLCHAIN
    bad = record(9, q(1, 1 << 40))  # callchain nr way beyond the record
    with pytest.raises(DecodeError, match="CALLCHAIN") as e:
        list(iter_records(tracepoint_sample() + bad,
                          AttrTable({77: (TRACEPOINT_ST, 0, True), 1: (st_, 0, True)})))
    assert e.value.offset == len(tracepoint_sample())
    bad_raw = record(9, q(77) + struct.pack("<II", 1, 1) + q(1) + struct.pack("<II", 0, 0)
                     + q(1) + struct.pack("<I", 999) + bytes(4))
    with pytest.raises(DecodeError, match="RAW"):
        list(iter_records(bad_raw, TP_TABLE))


def test_unknown_id_and_unsupported_bits():
    with pytest.raises(DecodeError, match="unknown sample id 78"):
        list(iter_records(tracepoint_sample(ident=78),
                          AttrTable({77: (TRACEPOINT_ST, 0, True), 79: (TRACEPOINT_ST | abi.PERF_SAMPLE_IP, 0, True)})))
    with pytest.raises(DecodeError, match="not supported"):
        list(iter_records(tracepoint_sample(), AttrTable.single((TRACEPOINT_ST | 1 << 40, 0, True))))
    with pytest.raises(DecodeError, match="IDENTIFIER"):
        list(iter_records(tracepoint_sample(),
                          AttrTable({1: (abi.PERF_SAMPLE_TID, 0, True), 2: (abi.PERF_SAMPLE_TIME, 0, True)})))
    with pytest.raises(DecodeError, match="no event attributes"):
        list(iter_records(tracepoint_sample(), AttrTable()))


def test_attr_table_accepts_attrs():
    attr = abi.perf_event_attr(type=2, sample_type=TRACEPOINT_ST, sample_id_all=1)
    rec, = iter_records(tracepoint_sample(), AttrTable({77: attr}))
    assert rec.time == 1000


def _real_stream():
    from ktapjit.events.records.perfdata import read_perf_data
    pd = read_perf_data(DATA / "sched.data")
    return bytes(pd.data_bytes), pd.attr_table()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_only_decode_errors(data):
    """Any corruption of a real stream yields records or a DecodeError, never
    another exception and never a hang."""
    buf, table = _REAL
    buf = bytearray(buf[:4096])
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    try:
        for rec in iter_records(bytes(buf[:cut]), table):
            assert rec.size >= 8
    except DecodeError as exc:
        assert 0 <= exc.offset <= cut


_REAL = _real_stream()


# --- the ABI itself --------------------------------------------------------------------

def test_attr_layout_matches_the_kernel():
    import ctypes
    A = abi.perf_event_attr
    assert ctypes.sizeof(A) == abi.PERF_ATTR_SIZE_VER8 == 136
    assert A().size == 136
    offsets = {"config": 8, "sample_period": 16, "sample_type": 24, "read_format": 32,
               "wakeup_events": 48, "bp_type": 52, "bp_addr": 56, "bp_len": 64,
               "branch_sample_type": 72, "sample_regs_user": 80, "sample_stack_user": 88,
               "clockid": 92, "sample_regs_intr": 96, "aux_watermark": 104,
               "sample_max_stack": 108, "aux_sample_size": 112, "sig_data": 120,
               "config3": 128}
    assert {name: getattr(A, name).offset for name in offsets} == offsets
    # Flag bits as perf 6.1 wrote them into tests/data/sched.data.
    a = A(disabled=1, inherit=1, sample_id_all=1, exclude_guest=1)
    assert bytes(a)[40:48] == struct.pack("<Q", 0x140003)
    a = A(precise_ip=3, mmap2=1, sigtrap=1)
    assert struct.unpack_from("<Q", bytes(a), 40)[0] == (3 << 15) | (1 << 23) | (1 << 37)
    # to_bytes cuts to an older ABI size and says so in the size field.
    raw = A(type=2, config=5).to_bytes(abi.PERF_ATTR_SIZE_VER7)
    assert len(raw) == 128 and struct.unpack_from("<I", raw, 4)[0] == 128
    assert A.from_bytes(raw).config == 5
    a = A()
    a.sample_freq = 99
    a.wakeup_watermark = 4096
    assert (a.sample_period, a.wakeup_events) == (99, 4096)
    assert abi.perf_event_mmap_page.data_head.offset == 1024
    assert abi.perf_event_mmap_page.data_size.offset == 1048


def test_ioctl_numbers():
    assert abi.PERF_EVENT_IOC_ENABLE == 0x2400
    assert abi.PERF_EVENT_IOC_DISABLE == 0x2401
    assert abi.PERF_EVENT_IOC_SET_OUTPUT == 0x2405
    assert abi.PERF_EVENT_IOC_SET_FILTER == 0x40082406
    assert abi.PERF_EVENT_IOC_ID == 0x80082407
    assert abi.PERF_EVENT_IOC_SET_BPF == 0x40042408


@pytest.mark.parametrize("err, root, words", [
    # Permission: "become root" only to whoever is not root.
    (errno.EACCES, False, "permission denied: run as root or lower /proc/sys/kernel/perf_event_paranoid (now "),
    (errno.EPERM, False, "permission denied: run as root or lower /proc/sys/kernel/perf_event_paranoid (now "),
    (errno.EPERM, True, "the kernel refuses it to perf even for root (EPERM: the event may not be sampled, "
                        "or a security policy such as lockdown forbids it)"),
    (errno.EACCES, True, "the kernel refuses it to perf even for root (EACCES: "),
    # 524 is the kernel's ENOTSUPP (not in user space's errno.h): a uprobe refused.
    (524, True, "the kernel cannot probe that instruction (ENOTSUPP, errno 524: uprobes refuse some "
                "instructions, e.g. lock-prefixed ones)"),
    (errno.ENOENT, True, "unknown event (no such tracepoint or event type in this kernel)"),
    (errno.EINVAL, True, "invalid argument (this kernel cannot open the event with these settings)"),
    (errno.EMFILE, False, "too many open files (raise ulimit -n)"),
])
def test_refusal_reasons_fit_the_errno_and_who_runs(err, root, words):
    assert abi.refusal_reason(err, root).startswith(words)
    assert "run as root" not in abi.refusal_reason(err, True)


def test_errno_messages():
    assert abi.explain_errno(errno.ENOENT, "x") == "x: " + abi.refusal_reason(errno.ENOENT)
    assert abi.errno_name(524) == "ENOTSUPP" and abi.errno_name(errno.EPERM) == "EPERM"
    assert issubclass(abi.PerfError, Exception)
    assert issubclass(DecodeError, Exception)
