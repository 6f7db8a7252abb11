"""Dynamic events: fetch-arg translation, definitions, kprobe text, and live
uprobes, uretprobes and USDT sites with exact counts and fetched values.

Live tests create events through DynamicProbes, open them with perf
(``perf_ring.tracepoint`` + ``PerfSession``, which serve dynamic events as
they serve tracepoints), run a C program compiled here (see test_elf.py) with
a known number of calls, and check every sample. A finalizer checks after
each live test, failed or not, that uprobe_events holds nothing ktapjit made
(it removes leftovers first, then fails the test).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from ktapjit.events.probes.dynamic_probes import (
    DynamicProbeError, DynamicProbes, KprobesUnavailable, ProbeEvent, event_name, group_name,
    kprobe_definition, kprobe_definition_for, kprobes_available, list_dynamic_events,
    remove_all, sdt_fetchargs, sweep_stale, translate_fetchargs, uprobe_definition,
)
from ktapjit.events.probes.elf import NoSuchSymbolError, SdtNote, parse_sdt_args
from ktapjit.frontend.eventdef import parse_eventdef
from ktapjit.tracing.plan import create_dynamic
from tests.livecheck import live_skip_reason
from tests.events.test_elf import Programs, build_programs

# --- pure: translation and definitions --------------------------------------------------------


def test_translate_fetchargs_x86():
    assert translate_fetchargs(["a=%di:s32", "b=%si:s32"], machine="x86_64") == ["a=%di:s32", "b=%si:s32"]
    # Unnamed args take the kernel's default names, by position.
    assert translate_fetchargs(["%di", "+0(%si):string"], machine="x86_64") == [
        "arg1=%di", "arg2=+0(%si):string"]
    # AT&T register spellings; a 32-bit name alone implies a 32-bit signed type.
    assert translate_fetchargs(["x=%rdi", "y=%esi", "z=+8(%rsp):u64", "w=%r9d:u32"],
                               machine="x86_64") == ["x=%di", "y=%si:s32", "z=+8(%sp):u64", "w=%r9:u32"]
    # $argN is not allowed on uprobes by the kernel: the ABI register instead.
    assert translate_fetchargs(["$arg1", "n=$arg6:s64"], machine="x86_64") == ["arg1=%di", "n=%r9:s64"]
    assert translate_fetchargs(["r=$retval:s32"], is_return=True, machine="x86_64") == ["r=$retval:s32"]
    assert translate_fetchargs(["$retval"], is_return=True, machine="x86_64") == ["arg1=$retval"]
    assert translate_fetchargs(["c=$comm", "s=$stack2", "i=\\42", "m=@+0x1234:u8"],
                               machine="x86_64") == ["c=$comm", "s=$stack2", "i=\\42", "m=@+0x1234:u8"]


def test_translate_fetchargs_aarch64_and_kprobes():
    assert translate_fetchargs(["$arg2", "v=%w0", "p=+16(%sp):u64", "lr=%lr"], machine="aarch64") == [
        "arg1=%x1", "v=%x0:s32", "p=+16(%sp):u64", "lr=%x30"]
    # kprobes keep $argN: the kernel supports it at a function entry.
    assert translate_fetchargs(["$arg3"], kind="kprobe", machine="x86_64") == ["arg1=$arg3"]


@pytest.mark.parametrize("args, kw, message", [
    (["$retval"], {}, "fetch arg '$retval': $retval exists only in %return probes"),
    (["$arg1"], {"is_return": True},
     "fetch arg '$arg1': $argN is not available in a uprobe %return probe (the argument "
     "registers are overwritten by then); use $retval"),
    (["$arg7"], {}, "fetch arg '$arg7': only $arg1..$arg6 are in registers on x86_64"),
    (["a=%zz"], {}, "fetch arg 'a=%zz': unknown register %zz on x86_64"),
    (["a=%di", "a=%si"], {}, "fetch arg 'a=%si': the name 'a' is used twice"),
    (["%di", "arg1=%si"], {}, "fetch arg 'arg1=%si': the name 'arg1' is used twice"),
    (["__probe_ip=%di"], {}, "fetch arg '__probe_ip=%di': the name '__probe_ip' is reserved"),
    (["1x=%di"], {}, "bad fetch arg '1x=%di': the name before '=' must be an identifier"),
    (["a="], {}, "fetch arg 'a=' has nothing to fetch"),
])
def test_translate_fetchargs_errors(args, kw, message):
    with pytest.raises(DynamicProbeError) as err:
        translate_fetchargs(args, machine="x86_64", **kw)
    assert str(err.value) == message


def test_uprobe_definition():
    assert uprobe_definition("ktapjit_9", "add", "/bin/x", 0x1149, fetchargs=["a=%di:s32"]) == \
        "p:ktapjit_9/add /bin/x:0x1149 a=%di:s32"
    assert uprobe_definition("ktapjit_9", "add__return", "/bin/x", 0x1149, is_return=True,
                             fetchargs=["arg1=$retval:s32"]) == \
        "r:ktapjit_9/add__return /bin/x:0x1149 arg1=$retval:s32"
    assert uprobe_definition("g", "tick", "/bin/x", 0x1318, ref_ctr_offset=0x3040) == \
        "p:g/tick /bin/x:0x1318(0x3040)"
    with pytest.raises(DynamicProbeError):
        uprobe_definition("g", "e", "/bin/with space", 1)


def test_kprobe_definitions():
    assert kprobe_definition("do_sys_open", group="ktapjit_7", machine="x86_64",
                             fetchargs=["dfd=%di:s32", "filename=+0(%si):string", "$arg3"]) == \
        "p:ktapjit_7/do_sys_open do_sys_open dfd=%di:s32 filename=+0(%si):string arg3=$arg3"
    assert kprobe_definition("do_sys_open", is_return=True, fetchargs=["$retval"], group="ktapjit_7") == \
        "r:ktapjit_7/do_sys_open__return do_sys_open arg1=$retval"
    assert kprobe_definition("vfs_read+0x10", group="g") == "p:g/vfs_read_0x10 vfs_read+0x10"
    assert kprobe_definition("ext4:ext4_sync_fs", group="g") == "p:g/ext4_sync_fs ext4:ext4_sync_fs"
    assert kprobe_definition("schedule").startswith(f"p:{group_name()}/schedule schedule")
    [spec] = parse_eventdef("probe:do_sys_open%return ret=$retval:s64")
    assert kprobe_definition_for(spec, group="ktapjit_1") == \
        "r:ktapjit_1/do_sys_open__return do_sys_open ret=$retval:s64"
    [spec] = parse_eventdef("probe:vfs_write count=%dx")
    assert kprobe_definition_for(spec, group="ktapjit_1", machine="x86_64") == \
        "p:ktapjit_1/vfs_write vfs_write count=%dx"
    with pytest.raises(DynamicProbeError) as err:
        kprobe_definition("vfs_read+4", is_return=True)
    assert str(err.value) == ("kprobe 'vfs_read+4%return': a return probe must be on a function "
                              "entry, not at an offset")
    with pytest.raises(DynamicProbeError):
        kprobe_definition("not a function")
    with pytest.raises(DynamicProbeError):
        kprobe_definition("schedule", fetchargs=["$retval"])


def test_kprobes_available(tmp_path):
    (tmp_path / "events").mkdir()
    avail = kprobes_available(tmp_path)
    assert not avail
    assert avail.reason == ("kprobes are not available: this kernel was built without "
                            f"CONFIG_KPROBE_EVENTS (no {tmp_path}/kprobe_events)")
    (tmp_path / "kprobe_events").write_text("")
    assert kprobes_available(tmp_path) and kprobes_available(tmp_path).reason == ""


def test_this_kernel_has_no_kprobes_message():
    root = Path("/sys/kernel/tracing")
    if not (root / "events").is_dir() or (root / "kprobe_events").exists():
        pytest.skip("needs a tracefs at /sys/kernel/tracing without kprobe_events")
    assert kprobes_available().reason == (
        "kprobes are not available: this kernel was built without CONFIG_KPROBE_EVENTS "
        "(no /sys/kernel/tracing/kprobe_events)")


def test_event_names():
    assert event_name("add") == "add"
    assert event_name("add", is_return=True) == "add__return"
    assert event_name("libc.so.6_0x1a") == "libc_so_6_0x1a"
    assert event_name("0x1149") == "_0x1149"
    assert event_name("_ZN3foo3barEv") == "_ZN3foo3barEv"
    assert len(event_name("x" * 200, is_return=True)) <= 63
    assert group_name(123) == "ktapjit_123" and group_name() == f"ktapjit_{os.getpid()}"


def _note(args: str, pc=0x1318, pc_offset=0x1318) -> SdtNote:
    return SdtNote("p", "n", pc, 0, 0, args, parse_sdt_args(args), pc_offset, None)


def test_sdt_fetchargs_x86():
    assert sdt_fetchargs(_note("-8@-24(%rbp) -4@$42 4@%eax 8@(%rdi) -1@$-3 2@0x10(%r12)"), "x86_64") == [
        "arg1=-24(%bp):s64", "arg2=\\42:s32", "arg3=%ax:u32", "arg4=+0(%di):u64",
        "arg5=\\253:s8", "arg6=+16(%r12):u16"]
    with pytest.raises(DynamicProbeError) as err:
        sdt_fetchargs(_note("8@(%rax,%rbx,8)"), "x86_64")
    assert str(err.value) == ("USDT p:n argument '8@(%rax,%rbx,8)': unsupported operand "
                              "(indexed addressing)")


def test_sdt_fetchargs_aarch64():
    assert sdt_fetchargs(_note("-4@x0 8@[sp, 16] -8@[x29, -8] 4@#5 8@[x1] -4@w2"), "aarch64") == [
        "arg1=%x0:s32", "arg2=+16(%sp):u64", "arg3=-8(%x29):s64", "arg4=\\5:u32",
        "arg5=+0(%x1):u64", "arg6=%x2:s32"]


def test_list_dynamic_events_parses_control_files(tmp_path):
    (tmp_path / "uprobe_events").write_text(
        "p:ktapjit_12/add /x:0x0000000000001149 a=%di:s32\n"
        "r:ktapjit_12/add__return /x:0x0000000000001149 arg1=$retval\n"
        "p:uprobes/other /y:0x10\n")
    (tmp_path / "kprobe_events").write_text("r16:ktapjit_3/f f\n")
    assert list_dynamic_events(tmp_path) == [
        ("uprobe_events", "ktapjit_12", "add"), ("uprobe_events", "ktapjit_12", "add__return"),
        ("uprobe_events", "uprobes", "other"), ("kprobe_events", "ktapjit_3", "f")]


# --- live ------------------------------------------------------------------------------------

TRACEFS = Path("/sys/kernel/tracing")


def _live_skip_reason() -> str | None:
    return live_skip_reason("live uprobes (writing tracefs uprobe_events and perf_event_open)",
                            "uprobe_events", "this kernel has no uprobe_events")


_LIVE_SKIP = _live_skip_reason()


def live(test):
    """Marks a test live (pytest -m live) and skips it, with the reason, when it cannot run."""
    return pytest.mark.live(pytest.mark.skipif(_LIVE_SKIP is not None, reason=_LIVE_SKIP or "")(test))


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> Programs:
    return build_programs(tmp_path_factory.mktemp("probed"))


def _ours(text: str) -> list[str]:
    """Lines of uprobe_events in this process's group. Other ktapjit runs (a
    concurrent test session, a user's trace) may have groups of their own:
    those are not ours to judge or remove."""
    return [ln for ln in text.splitlines() if f":{group_name()}/" in ln]


@pytest.fixture
def clean_uprobes():
    """After the test, passed or failed: nothing left in this process's group
    (leftovers are removed first, then the test fails)."""
    yield
    left = _ours((TRACEFS / "uprobe_events").read_text())
    if left:
        remove_all(group_name())
        pytest.fail(f"dynamic events left behind: {left}")


def _run_traced(events: list[ProbeEvent], argv: list[str], timeout: float = 20.0,
                callchain: bool = False):
    """Open ``events`` for a new process, release it, drain until it exits.
    Returns (proc stdout lines, [(event name, decoded fields, sample)], lost)."""
    from ktapjit.events.records.decode import Sample, iter_records
    from ktapjit.events.records.merge import merge_streams
    from ktapjit.events.records.perf_ring import PerfSession, tracepoint
    from ktapjit.events.tracefs import read_format

    proc = subprocess.Popen([*argv, "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        first = proc.stdout.readline()  # printed before it waits
        tps = [tracepoint(e.system, e.event, callchain=callchain) for e in events]
        formats = {e.event: read_format(e.system, e.event) for e in events}
        chunks = []
        with PerfSession(tps, pid=proc.pid) as s:
            s.enable()
            proc.stdin.write(b"x")
            proc.stdin.close()
            deadline = time.monotonic() + timeout
            while proc.poll() is None:
                assert time.monotonic() < deadline, "the probed program did not finish"
                chunks += s.read_chunks(0.05)
            s.disable()
            chunks += s.drain()
            table = s.attr_table()
            per_cpu: dict[int, list] = {}
            for cpu, chunk in chunks:
                per_cpu.setdefault(cpu, []).extend(iter_records(chunk, table))
            hits = []
            for r in merge_streams(per_cpu):
                if isinstance(r, Sample):
                    name = s.event_of(r.id).event
                    hits.append((name, formats[name].decode(r.raw), r))
            lost = s.lost()
        rest = proc.stdout.read()
        return (first + rest).decode().splitlines(), hits, lost
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@live
def test_uprobe_uretprobe_exact_counts_and_args(programs, clean_uprobes):
    n = 2000
    path = str(programs.pie)
    specs = parse_eventdef(f"probe:{path}:add a=%di:s32 b=%si:s32, "
                           f"probe:{path}:add%return ret=$retval:s32, "
                           f"probe:{path}:greet s=+0(%di):string, "
                           f"probe:{path}:scale $arg1:s64 k=$arg2")
    with DynamicProbes() as dp:
        events = [e for spec in specs for e in create_dynamic(dp, spec)]
        assert [e.event for e in events] == ["add", "add__return", "greet", "scale"]
        assert all(e.system == group_name() for e in events)
        lines = (TRACEFS / "uprobe_events").read_text()
        assert f"p:{group_name()}/add {path}:0x" in lines
        assert f"r:{group_name()}/add__return {path}:0x" in lines
        out, hits, lost = _run_traced(events, [path, str(n)])
    assert lost == 0
    counts = Counter(name for name, _f, _s in hits)
    assert counts == {"add": n, "add__return": n, "greet": n // 2, "scale": n}
    adds = [f for name, f, _ in hits if name == "add"]
    assert [(f["a"], f["b"]) for f in adds] == [(i, 2 * i - 5) for i in range(n)]
    # arg0 is the probe address, then the fetch args in order.
    # The program printed &add: the runtime address of the probed function.
    add_addr = int(out[0].split()[0], 16)
    assert {f["__probe_ip"] for f in adds} == {add_addr}
    rets = [f for name, f, _ in hits if name == "add__return"]
    assert [f["ret"] for f in rets] == [3 * i - 5 for i in range(n)]
    assert {f["__probe_func"] for f in rets} == {add_addr}
    greets = [f["s"] for name, f, _ in hits if name == "greet"]
    assert greets == [b"hello" if i % 4 == 0 else b"world!" for i in range(0, n, 2)]
    scales = [(f["arg1"], f["k"]) for name, f, _ in hits if name == "scale"]
    assert scales == [(i, 3) for i in range(n)]
    # Entry and return alternate, in time order.
    seq = [name for name, _f, _s in hits if name.startswith("add")]
    assert seq[:4] == ["add", "add__return", "add", "add__return"]
    assert _ours((TRACEFS / "uprobe_events").read_text()) == []


@live
def test_field_layout_is_probe_address_then_fetch_args(programs, clean_uprobes):
    from ktapjit.events.tracefs import read_format
    with DynamicProbes() as dp:
        [entry] = dp.add_uprobe(str(programs.pie), "add", fetchargs=("a=%di:s32", "%si:s32"))
        [ret] = dp.add_uprobe(str(programs.pie), "add", is_return=True, fetchargs=("$retval:s32",))
        e = read_format(entry.system, entry.event)
        r = read_format(ret.system, ret.event)
    assert [(f.name, f.size, f.signed) for f in e.args()] == [
        ("__probe_ip", 8, False), ("a", 4, True), ("arg2", 4, True)]
    # A return probe has two address fields: the function and the return address.
    assert [(f.name, f.size, f.signed) for f in r.args()] == [
        ("__probe_func", 8, False), ("__probe_ret_ip", 8, False), ("arg1", 4, True)]
    assert entry.arg_names == ("a", "arg2") and ret.arg_names == ("arg1",)


@live
@pytest.mark.parametrize("which", ["nopie", "lib"])
def test_non_pie_and_shared_library(programs, clean_uprobes, which):
    n = 777
    if which == "nopie":
        path, func, argv, args = str(programs.nopie), "add", [str(programs.nopie), str(n)], ("a=%di:s32",)
        want = [i for i in range(n)]
    else:
        path, func, argv, args = str(programs.lib), "lib_mul", [str(programs.uselib), str(n)], ("a=%di:s32", "b=%si:s32")
        want = [(i, 7) for i in range(n)]
    with DynamicProbes() as dp:
        events = dp.add_uprobe(path, func, fetchargs=args)
        events += dp.add_uprobe(path, func, is_return=True, fetchargs=("r=$retval:s32",))
        out, hits, lost = _run_traced(events, argv)
    entries = [f for name, f, _ in hits if name == func]
    returns = [f["r"] for name, f, _ in hits if name == f"{func}__return"]
    assert len(entries) == n and len(returns) == n and lost == 0
    if which == "nopie":
        assert [f["a"] for f in entries] == want
        assert returns == [3 * i - 5 for i in range(n)]
    else:
        assert [(f["a"], f["b"]) for f in entries] == want
        assert returns == [7 * i for i in range(n)]
        # The library is mapped somewhere: the probe address is where lib_mul runs.
        assert {f["__probe_ip"] for f in entries} == {int(out[0], 16)}


@live
def test_usdt_arguments_and_semaphore(programs, clean_uprobes):
    n = 1500
    path = str(programs.pie)
    specs = parse_eventdef(f"sdt:{path}:ktapjit_test:tick, sdt:{path}:ktapjit_test:sema")
    with DynamicProbes() as dp:
        events = [e for spec in specs for e in create_dynamic(dp, spec)]
        tick, sema = events
        assert tick.ref_ctr_offset is None and sema.ref_ctr_offset
        assert f"({sema.ref_ctr_offset:#x})" in sema.definition
        out, hits, lost = _run_traced(events, [path, str(n)])
    assert lost == 0
    ticks = [(f["arg1"], f["arg2"]) for name, f, _ in hits if name == "tick"]
    semas = [(f["arg1"], f["arg2"]) for name, f, _ in hits if name == "sema"]
    assert ticks == [(i, 42) for i in range(n)]
    # The kernel set the semaphore while the probe was in use: the program
    # saw it every time, and passed the guarded marker every time.
    assert out[-1].split()[1] == str(n)
    assert semas == [(3 * i, -7) for i in range(n)]
    # Afterwards, the semaphore is back to 0.
    again = subprocess.run([path, "3"], check=True, capture_output=True, text=True).stdout
    assert again.splitlines()[-1].split()[1] == "0"


def _site_lines(dp: DynamicProbes, event: str) -> list[str]:
    text = (dp.root / "uprobe_events").read_text()
    return [ln for ln in text.splitlines() if ln.split()[0][2:] == f"{dp.group}/{event}"]


@live
def test_a_glob_is_one_event_whose_sites_are_its_functions(programs, clean_uprobes):
    with DynamicProbes() as dp:
        [event] = dp.add_uprobe(str(programs.pie), "[ags]*")
        assert event.event == "probed_pie__sites" and event.kind == "uprobe"
        assert set(event.sites) >= {"add", "greet", "scale"}
        # One kernel probe per function, all in the one event, each with its site index.
        lines = _site_lines(dp, event.event)
        assert [ln.rsplit(" ", 1)[1] for ln in lines] == [f"ktapjit_site=\\{i}:u32" for i in range(len(event.sites))]
        # A function by name is an event of its own, as before.
        [again] = dp.add_uprobe(str(programs.pie), "add")
        assert again.event == "add" and again.sites == ()
    assert not [g for _c, g, _e in list_dynamic_events() if g == group_name()]


def _refusing(names: set, offsets: dict):
    """A trial open that refuses (ENOTSUPP) every site event holding one of `names`,
    as the kernel refuses a function whose first instruction it cannot probe."""
    def trial(root, group, event):
        text = (root / "uprobe_events").read_text()
        held = {offsets[int(ln.split()[1].rsplit(":", 1)[1], 16)] for ln in text.splitlines()
                if ln.split()[0][2:] == f"{group}/{event}"}
        return 524 if held & names else None
    return trial


@live
@pytest.mark.parametrize("refused", [set(), {"add"}, {"add", "scale"}])
def test_the_sites_the_kernel_refuses_are_found_and_left_out(programs, clean_uprobes, refused):
    from ktapjit.events.probes.elf import open_elf
    offsets = {t.offset: t.name for t in open_elf(str(programs.pie)).resolve("[ags]*")}
    with DynamicProbes(trial=_refusing(refused, offsets)) as dp:
        [event] = dp.add_uprobe(str(programs.pie), "[ags]*")
        assert set(event.sites) == set(offsets.values()) - refused
        assert sorted((r.event, r.errno) for r in dp.refused) == [(name, 524) for name in sorted(refused)]
        assert len(_site_lines(dp, event.event)) == len(event.sites)
    assert not [g for _c, g, _e in list_dynamic_events() if g == group_name()]


@live
def test_a_glob_the_kernel_refuses_entirely_is_an_error_and_leaves_nothing(programs, clean_uprobes):
    with DynamicProbes(trial=lambda root, group, event: 524) as dp:
        with pytest.raises(DynamicProbeError) as info:
            dp.add_uprobe(str(programs.pie), "[as]*")
        assert str(info.value).startswith("'[as]*' traces nothing: the kernel refused all 2 of its functions: "
                                          "the kernel cannot probe that instruction (ENOTSUPP")
        assert _site_lines(dp, "probed_pie__sites") == []
    assert not [g for _c, g, _e in list_dynamic_events() if g == group_name()]


@live
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_removed_on_exception(programs, clean_uprobes, exc):
    with pytest.raises(exc):
        with DynamicProbes() as dp:
            dp.add_uprobe(str(programs.pie), "add", fetchargs=("a=%di:s32",))
            dp.add_uprobe(str(programs.pie), "add", is_return=True)
            assert len(dp.created) == 2
            raise exc("boom")
    assert _ours((TRACEFS / "uprobe_events").read_text()) == []
    assert not (TRACEFS / "events" / group_name()).exists()


@live
def test_busy_event_is_removed_once_perf_closes(programs, clean_uprobes):
    """Events in use cannot be removed: close() reports it rather than hanging."""
    from ktapjit.events.records.perf_ring import PerfSession, tracepoint
    dp = DynamicProbes()
    try:
        [ev] = dp.add_uprobe(str(programs.pie), "add")
        session = PerfSession([tracepoint(ev.system, ev.event)], pid=os.getpid(), pages=1,
                              track_tasks=False)
        session.open()
        try:
            import ktapjit.events.probes.dynamic_probes as mod
            problem = mod._remove_one(dp.root, "uprobe_events", ev.system, ev.event, retries=2)
            assert problem is not None and "in use" in problem
        finally:
            session.close()
    finally:
        assert dp.close() == []


@live
def test_kernel_rejection_is_one_line_and_leaves_nothing(programs, clean_uprobes):
    with DynamicProbes() as dp:
        with pytest.raises(DynamicProbeError) as err:
            dp.add_uprobe(str(programs.pie), "add", fetchargs=("a=%di:s33",))
        msg = str(err.value)
        assert msg.startswith(f"cannot create uprobe on {programs.pie}:add: ")
        assert "kernel refused" in msg and "\n" not in msg
        assert dp.created == []
        with pytest.raises(NoSuchSymbolError) as err:
            dp.add_uprobe(str(programs.pie), "gret")
        assert "did you mean greet?" in str(err.value)


@live
def test_kprobe_on_this_kernel_gives_the_reason(clean_uprobes):
    if (TRACEFS / "kprobe_events").exists():
        pytest.skip("this kernel has kprobe_events")
    with DynamicProbes() as dp:
        with pytest.raises(KprobesUnavailable) as err:
            create_dynamic(dp, parse_eventdef("probe:do_sys_open dfd=%di")[0])
    assert str(err.value) == ("kprobes are not available: this kernel was built without "
                              "CONFIG_KPROBE_EVENTS (no /sys/kernel/tracing/kprobe_events)")


@live
def test_sweep_stale_removes_dead_runs_only(programs, clean_uprobes):
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        stale = DynamicProbes(group=group_name(dead.pid), sweep=False)
        stale.add_uprobe(str(programs.pie), "add")
        stale.add_uprobe(str(programs.pie), "greet", is_return=True)
        running = DynamicProbes(group=group_name(alive.pid), sweep=False)
        running.add_uprobe(str(programs.pie), "add")
        # A "killed" run: its events stay until someone sweeps.
        stale.created.clear()
        stale._closed = True
        groups = {g for _c, g, _e in list_dynamic_events()}
        assert {stale.group, running.group} <= groups
        fresh = DynamicProbes()  # sweeps at start
        # fresh.swept normally names it; a concurrent ktapjit may have swept it
        # first. Either way it must be gone, and the live run's group kept.
        groups = {g for _c, g, _e in list_dynamic_events()}
        assert stale.group not in groups and running.group in groups
        assert fresh.close() == []
    finally:
        alive.kill()
        alive.wait()
        remove_all(group_name(alive.pid))
        remove_all(group_name(dead.pid))
    assert group_name(dead.pid) not in sweep_stale()


@live
def test_uprobe_pmu_counts_without_tracefs(programs, clean_uprobes):
    """The uprobe PMU: perf_event_open makes the probe itself (nothing in
    uprobe_events); the synthesized format decodes its RAW data."""
    from ktapjit.events.records.decode import Sample, iter_records
    from ktapjit.events.probes.dynamic_probes import uprobe_pmu_event, uprobe_pmu_format, uprobe_pmu_type
    from ktapjit.events.probes.elf import open_elf
    from ktapjit.events.records.perf_ring import PerfSession

    if uprobe_pmu_type() is None:
        pytest.skip("no uprobe PMU (/sys/bus/event_source/devices/uprobe/type)")
    n = 321
    elf = open_elf(programs.pie)
    [(_add, add_off)] = elf.resolve("add")
    [sema] = elf.find_sdt("ktapjit_test", "sema")
    events = [uprobe_pmu_event(str(programs.pie), add_off, name="add"),
              uprobe_pmu_event(str(programs.pie), add_off, is_return=True, name="add%return"),
              uprobe_pmu_event(str(programs.pie), sema.pc_offset, name="sema",
                               ref_ctr_offset=sema.semaphore_offset)]
    formats = {"add": uprobe_pmu_format("add"), "add%return": uprobe_pmu_format("add", True),
               "sema": uprobe_pmu_format("sema")}
    proc = subprocess.Popen([str(programs.pie), str(n), "wait"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        add_addr = int(proc.stdout.readline().split()[0], 16)
        with PerfSession(events, pid=proc.pid) as s:
            assert _ours((TRACEFS / "uprobe_events").read_text()) == []
            s.enable()
            proc.stdin.write(b"x")
            proc.stdin.close()
            chunks = []
            deadline = time.monotonic() + 10
            while proc.poll() is None and time.monotonic() < deadline:
                chunks += s.read_chunks(0.05)
            s.disable()
            chunks += s.drain()
            table = s.attr_table()
            hits = [(s.event_of(r.id).name, r) for _c, ch in chunks for r in iter_records(ch, table)
                    if isinstance(r, Sample)]
        out = proc.stdout.read().decode().split()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    counts = Counter(name for name, _r in hits)
    assert counts == {"add": n, "add%return": n, "sema": n}
    assert out[-1] == str(n)  # the PMU's ref_ctr_offset set the semaphore too
    assert {formats["add"].decode(r.raw)["__probe_ip"] for name, r in hits if name == "add"} == {add_addr}
    assert {formats["add%return"].decode(r.raw)["__probe_func"]
            for name, r in hits if name == "add%return"} == {add_addr}


@live
def test_exit_paths_of_a_separate_process(programs, clean_uprobes):
    """A run that exits without closing (atexit removes its events), and one
    killed by SIGKILL (its group stays, and the next start sweeps it)."""
    import signal
    import sys

    repo = Path(__file__).resolve().parents[2]
    code = ("import os, sys, time\n"
            "from ktapjit.events.probes.dynamic_probes import DynamicProbes\n"
            "dp = DynamicProbes()\n"
            f"dp.add_uprobe({str(programs.pie)!r}, 'add')\n"
            "print(dp.group, flush=True)\n"
            "if sys.argv[1] == 'hang': time.sleep(60)\n"
            "sys.exit(3)\n")
    done = subprocess.run([sys.executable, "-c", code, "exit"], cwd=repo, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 3, done.stderr
    group = done.stdout.strip()
    assert group.startswith("ktapjit_") and group not in {g for _c, g, _e in list_dynamic_events()}

    hung = subprocess.Popen([sys.executable, "-c", code, "hang"], cwd=repo, stdout=subprocess.PIPE,
                            text=True)
    try:
        group = hung.stdout.readline().strip()
        assert group in {g for _c, g, _e in list_dynamic_events()}
        hung.send_signal(signal.SIGKILL)
        hung.wait(10)
        assert group in {g for _c, g, _e in list_dynamic_events()}  # left behind
        sweep_stale()
        assert group not in {g for _c, g, _e in list_dynamic_events()}
    finally:
        if hung.poll() is None:
            hung.kill()
            hung.wait()
        remove_all(group)


@live
def test_the_site_field_name_is_not_a_fetch_arg_name(programs, clean_uprobes):
    with DynamicProbes() as dp:
        with pytest.raises(DynamicProbeError) as info:
            dp.add_uprobe(str(programs.pie), "[as]*", fetchargs=("ktapjit_site=%di:s32",))
        assert str(info.value) == (f"'{programs.pie}:[as]*': the fetch arg name 'ktapjit_site' is ktapjit's own "
                                   "(the site index)")
        assert dp.created == []
