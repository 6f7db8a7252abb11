"""Uprobes, uretprobes and USDT markers through `ktapjit run` and `ktapjit
record`, live and replayed; kprobes' refusal on this kernel.

The probed program is tests/events/test_elf.py's PROGRAM_C, compiled here
(PIE, -O0): `probed N [wait]` prints `&add &greet`, then calls add(i, 2i-5)
and scale(i, 3) N times, greet() every other i, passes the USDT marker
ktapjit_test:tick (i, 42) N times and ktapjit_test:sema (3i, -7) whenever its
semaphore is set, and prints `total sema_seen` last. So every count and
every argument value is known exactly. Expected addresses and offsets come
from the program itself and from binutils (readelf), not from ktapjit.

Every test, failed or not, must leave /sys/kernel/tracing/uprobe_events as it
found it and no new `ktapjit_*` group under events/, other running ktapjit
processes' aside (the `clean_uprobes` finalizer removes leftovers, then fails
the test); the conftest's
`clean_tracing_state` checks perf fds, children and signal handlers.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.tracing import runcli

from ktapjit.cli import main
from tests.events.test_elf import PROGRAM_C
from tests.jit.feedspy import spied_feeds
from tests.tracing.conftest import TRACEFS, live_skip_reason, status_line


def _skip_reason():
    if os.geteuid() != 0:
        return "live uprobes need root (writing tracefs uprobe_events and perf_event_open)"
    reason = live_skip_reason()
    if reason:
        return reason
    if not (TRACEFS / "uprobe_events").exists():
        return f"this kernel has no uprobe_events ({TRACEFS / 'uprobe_events'} is missing)"
    if shutil.which("gcc") is None:
        return "no C compiler (gcc) to build the probed program"
    return None


_REASON = _skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("clean_tracing_state", "clean_uprobes")]

N = 300


# --- fixtures --------------------------------------------------------------------------------

def _groups() -> set[str]:
    return {d.name for d in (TRACEFS / "events").iterdir() if d.name.startswith("ktapjit_")}


def _foreign(group: str) -> bool:
    """A group of a ktapjit that runs outside this test (a concurrent test
    session, a user's trace): not this test's to judge or remove. Groups of
    this process, of its descendants and of dead processes are the test's."""
    tail = group.rpartition("_")[2]
    if not tail.isdigit():
        return False
    pid = int(tail)
    while pid > 1:
        if pid == os.getpid():
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False  # gone: a killed run's leftovers are the test's to notice
        pid = int(stat.rpartition(")")[2].split()[1])  # "pid (comm) state ppid ..."
    return True


def _new_lines(before: list[str]) -> list[str]:
    now = (TRACEFS / "uprobe_events").read_text().splitlines()
    return [ln for ln in now if ln not in before and not _foreign(re.match(r"^\w:([^/]+)/", ln).group(1))]


@pytest.fixture
def clean_uprobes():
    before_lines = (TRACEFS / "uprobe_events").read_text().splitlines()
    before_groups = _groups()
    yield
    left = _new_lines(before_lines)
    groups = {g for g in _groups() - before_groups if not _foreign(g)}
    if left or groups:
        from ktapjit.events.probes.dynamic_probes import remove_all
        for group in groups | {m.group(1) for ln in left if (m := re.match(r"^\w:([^/]+)/", ln))}:
            remove_all(group)
        pytest.fail(f"dynamic events left behind: {left}, groups {sorted(groups)}")
    assert _new_lines(before_lines) == []


@pytest.fixture(scope="module")
def prog(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("uprobed")
    (d / "probed.c").write_text(PROGRAM_C)
    subprocess.run(["gcc", "-O0", "-fPIE", "-pie", "-o", str(d / "probed"), str(d / "probed.c")], check=True)
    return str(d / "probed")


def ktapjit(*args: str, script: str, command: tuple = ()) -> tuple[int, str, str, list[str]]:
    """`ktapjit run ARGS -e SCRIPT [-- COMMAND]` in this process (so leaks show
    here). Returns status, script output, stderr, and the command's output
    lines (its stdout is a file for the duration)."""
    out, err = io.BytesIO(), io.BytesIO()
    argv = ["run", *runcli.engine_args(args), *args, "-e", script] + (["--", *command] if command else [])
    with tempfile.TemporaryFile() as child_out:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(child_out.fileno(), 1)
        try:
            status = main(argv, stdout=out, stderr=err)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        child_out.seek(0)
        lines = child_out.read().decode().splitlines()
    return status, out.getvalue().decode("latin-1"), err.getvalue().decode("latin-1"), lines


def file_offset(path: str, symbol: str) -> int:
    """The file offset of a function, from nm and readelf's program headers."""
    nm = subprocess.run(["nm", path], check=True, capture_output=True, text=True).stdout
    vaddr = next(int(ln.split()[0], 16) for ln in nm.splitlines() if ln.split()[-1] == symbol)
    headers = subprocess.run(["readelf", "-lW", path], check=True, capture_output=True, text=True).stdout
    for ln in headers.splitlines():
        f = ln.split()
        if f and f[0] == "LOAD":
            offset, seg_vaddr, filesz = int(f[1], 16), int(f[2], 16), int(f[4], 16)
            if seg_vaddr <= vaddr < seg_vaddr + filesz:
                return vaddr - seg_vaddr + offset
    raise AssertionError(f"{symbol} is in no LOAD segment")


# --- values and counts -----------------------------------------------------------------------

def test_entry_probe_counts_arguments_and_event_values(prog):
    status, out, err, child = ktapjit("-q", command=(prog, str(N)), script=f"""
var n, bad, where = 0, 0, {{}}
trace probe:{prog}:add a=%di:s32 b=%si:s32 {{
    if (args.a != n || arg1 != n || args.b != 2 * n - 5 || arg2 != args.b || arg3 != nil) {{ bad += 1 }}
    if (n < 2) {{ printf("%s %x %d %d %s|\\n", probename, arg0, arg1, arg2, argstr) }}
    where[arg0] += 1
    n += 1
}}
trace_end {{ for (k, v in pairs(where)) {{ printf("%x %d\\n", k, v) }}; print(n, bad) }}""")
    assert (status, err) == (0, "")
    add = int(child[0].split()[0], 16)  # &add, as the program printed it
    assert out == (f"add {add:x} 0 -5 ({add:x}) a=0 b=-5|\n"
                   f"add {add:x} 1 -3 ({add:x}) a=1 b=-3|\n"
                   f"{add:x} {N}\n{N}\t0\n")


def test_return_probe_arg0_is_the_function_then_fetch_args(prog):
    """%return: arg0 = __probe_func, arg1.. = the fetch args ($retval here);
    __probe_ret_ip is skipped by argN but reachable as args.__probe_ret_ip."""
    status, out, err, child = ktapjit("-q", command=(prog, str(N)), script=f"""
var n, bad, func, ret_ips = 0, 0, {{}}, {{}}
trace probe:{prog}:add%return r=$retval:s32 {{
    if (arg1 != 3 * n - 5 || args.r != arg1 || arg2 != nil) {{ bad += 1 }}
    func[arg0] += 1
    ret_ips[args.__probe_ret_ip] += 1
    if (n == 0) {{ print(probename, argstr) }}
    n += 1
}}
trace probe:{prog}:scale%return $retval:s64 {{ if (arg1 != args.arg1 || arg1 != (n - 1) * 3) {{ bad += 1 }} }}
trace_end {{ for (k, v in pairs(func)) {{ printf("%x %d\\n", k, v) }}; print(n, bad, len(ret_ips)) }}""")
    assert (status, err) == (0, "")
    add = int(child[0].split()[0], 16)
    first, func, last = out.splitlines()
    name, argstr = first.split("\t")
    assert name == "add__return" and re.fullmatch(rf"\({add:x} <- [0-9a-f]+\) r=-5", argstr), first
    ret_ip = int(argstr.split("<- ")[1].split(")")[0], 16)
    assert ret_ip != add and func == f"{add:x} {N}"
    assert last == f"{N}\t0\t1"  # one call site of add: one return address


def test_a_symbol_glob_is_one_event_whose_sites_are_named_as_functions(prog, tmp_path):
    """The glob's functions are the sites of one kernel event (events/probes/probe_sites.py);
    probename names the function each record came from, live, on replay, and on a
    replay where the binary's path is unknown (the recording's site table names them)."""
    data = tmp_path / "glob.data"
    script = f"""
var t = {{}}
trace probe:{prog}:[ags]* {{ t[probename] += 1 }}
trace_end {{ for (k, v in pairs(t)) {{ print(k, v) }} }}"""
    status, out, err, _ = ktapjit("--record", str(data), command=(prog, str(N)), script=script)
    assert status == 0 and err == status_line(3) + "\n"
    expected = sorted([f"add\t{N}", f"scale\t{N}", f"greet\t{N // 2}"])
    assert sorted(out.splitlines()) == expected
    recorded = subprocess.run(["perf", "script", "-i", str(data), "-F", "event"], capture_output=True, text=True)
    if recorded.returncode == 0:  # perf reads the file, and sees one event
        assert {ln.strip() for ln in recorded.stdout.splitlines()} == {f"{_group_of(data)}:probed__sites:"}
    for spelling in (prog, "/nonexistent/probed"):
        status, replayed, err, _ = ktapjit("--replay", str(data), script=script.replace(prog, spelling))
        assert (status, sorted(replayed.splitlines()), err) == (0, expected, "")


def test_a_globs_probename_runs_on_the_native_event_path(prog, engine):
    """The JIT names each site from the site table in native code (feed.c's
    KF_SITE_NAME): the live session does not fall back to the per-event path."""
    script = f"var t = {{}}\ntrace probe:{prog}:[ags]* {{ t[probename] += 1 }}\n" \
             "trace_end { for (k, v in pairs(t)) { print(k, v) } }"
    with spied_feeds() as feeds:
        status, out, err, _ = ktapjit("-q", command=(prog, str(N)), script=script)
    assert (status, sorted(out.splitlines()), err) == (0, sorted([f"add\t{N}", f"scale\t{N}", f"greet\t{N // 2}"]), "")
    if engine == "jit":
        assert feeds and feeds[0] is not None and feeds[0].samples == 2 * N + N // 2
    else:
        assert feeds == []  # the interpreter has no native path


def _open_files() -> dict[int, str]:
    files = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            files[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own fd
            pass
    return files


@pytest.mark.parametrize("bpf", [False, True], ids=["engine", "bpf"])
def test_a_uprobe_run_leaves_no_file_open(prog, engine, bpf, tmp_path):
    """The probed binary is read for its symbols and mapped; after the run
    this process has exactly the files it had before (an in-process caller
    runs many traces). A copy: a binary no run of this process has read yet."""
    if bpf and engine != "jit":
        pytest.skip("the bpf engine runs once, not per user-space engine")
    prog = str(shutil.copy(prog, tmp_path / "probed"))  # argv holds strings, as from a shell
    script = f"var n = 0\ntrace probe:{prog}:add {{ n += 1 }}\ntrace_end {{ print(n) }}"
    before = _open_files()
    if bpf:
        runcli.ENGINE = "bpf"
    status, out, err, _ = ktapjit("-q", command=(prog, "5"), script=script)
    assert (status, out, err) == (0, "5\n", "")
    assert _open_files() == before


def _group_of(data) -> str:
    from ktapjit.events.records.perfdata import read_perf_data
    return next(s for s, _e in read_perf_data(str(data)).schemas() if s.startswith("ktapjit_"))


def test_hex_file_offset(prog):
    offset = file_offset(prog, "add")
    status, out, err, child = ktapjit("-q", command=(prog, str(N)), script=f"""
var n, name, at = 0, nil, {{}}
trace probe:{prog}:{offset:#x} {{ n += 1; name = probename; at[arg0] = 1 }}
trace_end {{ for (k, v in pairs(at)) {{ printf("%x ", k) }}; print(name, n) }}""")
    assert (status, err) == (0, "")
    add = int(child[0].split()[0], 16)
    assert out == f"{add:x} {Path(prog).name}_{offset:#x}\t{N}\n"


def test_usdt_markers_with_arguments_and_semaphore(prog):
    status, out, err, child = ktapjit("-q", command=(prog, str(N)), script=f"""
var ticks, semas, bad = 0, 0, 0
trace sdt:{prog}:ktapjit_test:tick {{
    if (probename != "tick" || arg1 != ticks || arg2 != 42 || args.arg1 != arg1 || arg3 != nil) {{ bad += 1 }}
    ticks += 1
}}
trace sdt:{prog}:ktapjit_test:sema {{
    if (arg1 != 3 * semas || arg2 != -7) {{ bad += 1 }}
    semas += 1
}}
trace_end {{ print(ticks, semas, bad) }}""")
    assert (status, out, err) == (0, f"{N}\t{N}\t0\n", "")
    # The kernel set the semaphore while the probe was in use: the program saw it each time.
    assert child[-1].split()[1] == str(N)


def test_filter_on_fetch_args_live(prog):
    status, out, err, _ = ktapjit("-q", command=(prog, str(N)), script=f"""
var n = 0
trace probe:{prog}:add a=%di:s32 /a >= 100 && a < 110/ {{ n += 1 }}
trace probe:{prog}:add a=%di:s32 {{ n += 1000 }}
trace_end {{ print(n) }}""")
    # Both probes share one event (same target and fetch args); the filter is per probe.
    assert (status, out, err) == (0, f"{10 + 1000 * N}\n", "")


# --- record and replay -----------------------------------------------------------------------

EVERY_EVENT = """
trace probe:{p}:add a=%di:s32 b=%si:s32 /a < 20 || b > 570/ {{ print(probename, arg1, arg2, argstr) }}
trace probe:{p}:add%return r=$retval:s32, probe:{p}:greet {{ print(probename, arg1, argstr) }}
trace sdt:{p}:ktapjit_test:tick {{ print(probename, arg1, arg2, argstr) }}
trace_end {{ print("end") }}
"""


def test_record_then_replay_prints_the_same_bytes(prog, tmp_path):
    data = tmp_path / "u.data"
    script = EVERY_EVENT.format(p=prog)
    status, live, err, _ = ktapjit("-q", "--record", str(data), command=(prog, str(N)), script=script)
    assert (status, err) == (0, "")
    lines = live.splitlines()
    assert sum(ln.startswith("add\t") for ln in lines) == len([i for i in range(N) if i < 20 or 2 * i - 5 > 570])
    assert sum(ln.startswith("add__return\t") for ln in lines) == N
    assert sum(ln.startswith("tick\t") for ln in lines) == N
    status, replayed, err, _ = ktapjit("--replay", str(data), script=script)
    assert (status, err) == (0, "")
    assert replayed == live
    # The recording holds the formats under the recording run's group: here,
    # the test process ran ktapjit in-process.
    from ktapjit.events.records.perfdata import read_perf_data
    systems = {system for system, _event in read_perf_data(str(data)).schemas()}
    assert systems == {f"ktapjit_{os.getpid()}"}


def test_ktapjit_record_then_replay_binds_by_event_name(prog, tmp_path):
    data = tmp_path / "r.data"
    out, err = io.BytesIO(), io.BytesIO()
    with open(os.devnull, "wb") as null:
        saved = os.dup(1)
        os.dup2(null.fileno(), 1)
        try:
            status = main(["record", "-q", "-e", f"probe:{prog}:add a=%di:s32", "-e",
                           f"sdt:{prog}:ktapjit_test:*", "-o", str(data), "--", prog, "20"],
                          stdout=out, stderr=err)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
    assert (status, err.getvalue()) == (0, b"")
    # Replay with other spellings: no fetch args (the recording has them), a
    # marker by its name; events of the recording under any ktapjit_* group.
    status, replayed, err, _ = ktapjit("--replay", str(data), script=f"""
var t = {{}}
trace probe:{prog}:add {{ t["add"] += args.a }}
trace sdt:{prog}:ktapjit_test:tick {{ t["tick"] += arg2 }}
trace sdt:{prog}:ktapjit_test:sema {{ t["sema"] += 1 }}
trace_end {{ print(t["add"], t["tick"], t["sema"]) }}""")
    assert (status, replayed, err) == (0, f"{sum(range(20))}\t{42 * 20}\t20\n", "")
    status, _, err, _ = ktapjit("--replay", str(data), script=f"trace probe:{prog}:add%return {{ }}")
    assert status == 2 and err.startswith(
        f"-e:1:7: error: no uprobe event 'add__return' for 'probe:{prog}:add%return' in recording '{data}'")


def test_ktap_usdt_form_without_a_provider_finds_the_marker_in_any_provider(prog):
    """ktap's sdt:/path:NAME: the marker NAME whatever its provider."""
    status, out, err, _ = ktapjit("-q", command=(prog, str(N)), script=f"""
var ticks = 0
trace sdt:{prog}:tick {{ if (arg2 == 42) {{ ticks += 1 }} }}
trace_end {{ print(ticks) }}""")
    assert (status, out, err) == (0, f"{N}\n", "")


# --- targets by name: libraries through ld.so.cache, programs through $PATH --------------------

ATOI_C = r"""
#include <stdio.h>
#include <stdlib.h>
/* `atoier N S`: atoi(N) once, then atoi(S) N times; prints N * S. */
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    long sum = 0;
    for (int i = 0; i < n; i++) sum += atoi(argv[2]);
    printf("%ld\n", sum);
    return 0;
}
"""


@pytest.fixture(scope="module")
def atoier(tmp_path_factory) -> str:
    from tests.cbuild import build_c
    return str(build_c(tmp_path_factory, "atoier", ATOI_C, "-O0", purpose="the atoi caller"))


LIBC_ATOI = """var n, seven = 0, 0
trace probe:libc:atoi s=+0(%di):string {
    n += 1
    if (args.s == "7") { seven += 1 }
}
trace_end { print(n, seven) }"""


def test_a_library_by_name_is_found_through_ld_so_cache(atoier, libc, tmp_path):
    """`probe:libc:atoi`: no path, yet the libc this machine's programs load.
    Recorded, and replayed by the same spelling and by the file's path."""
    data = tmp_path / "libc.data"
    status, out, err, child = ktapjit("-q", "--record", str(data), command=(atoier, str(N), "7"),
                                      script=LIBC_ATOI)
    assert (status, out, err, child) == (0, f"{N + 1}\t{N}\n", "", [str(7 * N)])
    status, replayed, err, _ = ktapjit("--replay", str(data), script=LIBC_ATOI)
    assert (status, replayed, err) == (0, out, "")
    status, replayed, err, _ = ktapjit("--replay", str(data), script=LIBC_ATOI.replace("libc:", f"{libc}:"))
    assert (status, replayed, err) == (0, out, "")
    # A name this machine cannot resolve stays as written on replay: the events are found by symbol.
    status, replayed, err, _ = ktapjit("--replay", str(data), script=LIBC_ATOI.replace("libc:", "libnonesuch:"))
    assert (status, replayed, err) == (0, out, "")


def test_a_library_by_name_and_by_path_share_one_event(atoier, libc):
    status, out, err, _ = ktapjit("-q", command=(atoier, "10", "3"), script=f"""
var t = {{}}
trace probe:libc.so.6:atoi {{ t[probename] += 1 }}
trace probe:{libc}:atoi {{ t[probename] += 100 }}
trace_end {{ for (k, v in pairs(t)) {{ print(k, v) }} }}""")
    assert (status, out, err) == (0, "atoi\t1111\n", "")


def test_a_program_by_name_is_found_through_path(prog, monkeypatch):
    monkeypatch.setenv("PATH", f"{os.path.dirname(prog)}{os.pathsep}{os.environ.get('PATH', '')}")
    name = os.path.basename(prog)
    status, out, err, _ = ktapjit("-q", command=(prog, str(N)), script=f"""
var n, ticks = 0, 0
trace probe:{name}:add {{ n += 1 }}
trace sdt:{name}:ktapjit_test:tick {{ ticks += 1 }}
trace_end {{ print(n, ticks) }}""")
    assert (status, out, err) == (0, f"{N}\t{N}\n", "")


THROWER_CC = r"""
#include <cstdlib>
/* `thrower N`: throws and catches N exceptions. */
int main(int argc, char **argv) {
    int n = std::atoi(argv[1]), caught = 0;
    for (int i = 0; i < n; i++) {
        try { throw i; } catch (int) { caught++; }
    }
    return caught == n ? 0 : 1;
}
"""


def test_usdt_markers_of_a_library_by_name(tmp_path_factory):
    """libstdc++'s own markers (libstdcxx:throw, :catch), by the library's name."""
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler (g++) to build the throwing program")
    from ktapjit.events.probes.probe_targets import TargetNotFound, find_target
    from ktapjit.events.probes.elf import open_elf
    try:
        markers = {n.name for n in open_elf(find_target("libstdc++")).find_sdt("libstdcxx", "*")}
    except TargetNotFound:
        pytest.skip("no libstdc++ in ld.so.cache")
    if not {"throw", "catch"} <= markers:
        pytest.skip("this libstdc++ has no libstdcxx:throw/catch markers")
    d = tmp_path_factory.mktemp("thrower")
    (d / "thrower.cc").write_text(THROWER_CC)
    subprocess.run(["g++", "-O0", "-o", str(d / "thrower"), str(d / "thrower.cc")], check=True)
    status, out, err, _ = ktapjit("-q", command=(str(d / "thrower"), str(N)), script="""
var t = {}
trace sdt:libstdc++:libstdcxx:throw, sdt:libstdc++:libstdcxx:catch { t[probename] += 1 }
trace_end { print(t["throw"], t["catch"]) }""")
    assert (status, out, err) == (0, f"{N}\t{N}\n", "")


def test_an_unknown_name_is_status_2_saying_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    script = "var n = 0\ntrace sched:sched_switch, probe:libktapjit_nonesuch:malloc { }"
    status, out, err, _ = ktapjit(script=script)
    linker_dirs = [d for d in (f"/lib/{os.uname().machine}-linux-gnu", f"/usr/lib/{os.uname().machine}-linux-gnu",
                               "/lib64", "/usr/lib64", "/lib", "/usr/lib") if os.path.isdir(d)]
    col = len("trace sched:sched_switch, ") + 1
    assert (status, out) == (2, "")
    assert err.splitlines() == [
        f"-e:2:{col}: error: no library or program 'libktapjit_nonesuch' in /etc/ld.so.cache, "
        f"{', '.join(linker_dirs)} or $PATH ({tmp_path})",
        script.splitlines()[1], " " * (col - 1) + "^"]


# --- functions the kernel cannot probe ----------------------------------------------------------
#
# uprobes refuse some instructions; perf_event_open then fails with the
# kernel's ENOTSUPP (524). glibc's pthread_spin_lock starts with one (a
# lock-prefixed decrement on x86-64).

ENOTSUPP_WORDS = ("the kernel cannot probe that instruction (ENOTSUPP, errno 524: uprobes refuse some "
                  "instructions, e.g. lock-prefixed ones)")


def _mapped_libc() -> str:
    """The C library this process runs on, as the dynamic linker found it."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and re.search(r"/libc(\.so\.6|-[\d.]+\.so)$", fields[5]):
            return fields[5]
    pytest.skip("no libc.so.6 is mapped in this process (not a glibc system?)")


@pytest.fixture(scope="module")
def libc() -> str:
    return _mapped_libc()


def _functions(path: str, glob: str) -> list[str]:
    """Dynamic function symbols of `path` matching `glob`, one per address
    (aliases share one uprobe), from binutils' nm."""
    import fnmatch
    nm = subprocess.run(["nm", "-D", "--defined-only", path], check=True, capture_output=True, text=True).stdout
    by_address = {}
    for line in nm.splitlines():
        fields = line.split()
        name = fields[-1].split("@")[0]
        if len(fields) == 3 and fields[1] in "TWi" and fnmatch.fnmatchcase(name, glob):
            by_address.setdefault(fields[0], name)
    return sorted(by_address.values())


def test_an_explicit_uprobe_the_kernel_refuses_fails_in_words(libc):
    # System-wide: a uprobe for one process (-- CMD) is placed lazily, and
    # refused later, when that process maps the library.
    status, out, err, _ = ktapjit(script=f"trace probe:{libc}:pthread_spin_lock {{ }}\ntick-100ms {{ exit() }}")
    if status == 0:
        pytest.skip("this kernel accepts a uprobe on pthread_spin_lock")
    assert (status, out, err) == (1, "", f"ktapjit: cannot open probe:{libc}:pthread_spin_lock: {ENOTSUPP_WORDS}\n")


def test_a_uprobe_glob_skips_functions_the_kernel_refuses(libc):
    matched = _functions(libc, "pthread_spin_*")
    assert "pthread_spin_lock" in matched
    status, out, err, _ = ktapjit(script=(
        f'trace probe:{libc}:pthread_spin_* {{ }}\ntick-100ms {{ exit() }}\ntrace_end {{ print("end") }}'))
    if "skipped" not in err:
        pytest.skip("this kernel accepts a uprobe on pthread_spin_lock")
    assert (status, out) == (0, "end\n")
    assert err == (f"ktapjit: skipped 1 event a glob matched (pthread_spin_lock): {ENOTSUPP_WORDS}\n"
                   + status_line(len(matched) - 1 + 1) + "\n")  # + tick's clock event


def test_a_glob_over_all_of_libc_runs_and_reports_what_it_skipped(libc, engine):
    """ktap's glibc_func_hist, system-wide: a uprobe on every libc function.
    They are the sites of one event, so it attaches and detaches in seconds
    (bench/measured/attach.md), and a loop of `ls` makes sure of calls."""
    workload = subprocess.Popen(["sh", "-c", "while :; do ls / > /dev/null; sleep 0.05; done"])
    try:
        status, out, err, _ = ktapjit(script=(
            f"var n = 0\ntrace probe:{libc}:* {{ n += 1 }}\ntick-1s {{ if (n > 0) {{ exit() }} }}\n"
            "trace_end { print(n > 0) }"))
    finally:
        workload.kill()
        workload.wait()
    assert (status, out) == (0, "true\n"), err
    skipped = re.search(r"^ktapjit: skipped (\d+) events? a glob matched \((.*)\): ", err, re.M)
    assert skipped and "pthread_spin_lock" in skipped.group(2), err
    tracing = re.search(r"^Tracing (\d+) events", err, re.M)
    functions = len(_functions(libc, "*"))
    assert tracing and int(tracing.group(1)) == functions - int(skipped.group(1)) + 1, err  # + tick's clock


# --- errors ----------------------------------------------------------------------------------

def test_unknown_symbol_is_status_2_at_the_eventdef_and_leaves_nothing(prog):
    # The first probe's event is created before the second fails: it must go too.
    script = f"trace probe:{prog}:add {{ }}\ntrace sched:sched_switch, probe:{prog}:addd {{ }}"
    status, out, err, child = ktapjit(command=(prog, "1"), script=script)
    assert (status, out, child) == (2, "", [])
    col = len("trace sched:sched_switch, ") + 1
    assert err.splitlines() == [
        f"-e:2:{col}: error: no function symbol 'addd' in '{prog}'; did you mean add?",
        script.splitlines()[1], " " * (col - 1) + "^"]


def test_bad_fetch_arg_is_one_line_at_the_eventdef(prog):
    status, out, err, _ = ktapjit(script=f"trace probe:{prog}:add $retval {{ }}")
    assert (status, out) == (2, "")
    assert err.splitlines()[0] == "-e:1:7: error: fetch arg '$retval': $retval exists only in %return probes"


def test_kprobe_gives_the_kernel_reason(prog):
    from ktapjit.events.probes.dynamic_probes import kprobes_available
    if (TRACEFS / "kprobe_events").exists():
        pytest.skip("this kernel has kprobe_events")
    status, out, err, _ = ktapjit(script="trace probe:do_sys_open dfd=%di { }")
    assert (status, out) == (2, "")
    assert err.splitlines()[0] == f"-e:1:7: error: {kprobes_available().reason}"
    assert "CONFIG_KPROBE_EVENTS" in err


# --- every exit path removes the events ------------------------------------------------------

@pytest.mark.parametrize("body, status, expect", [
    ("n += 1; if (n == 5) { exit() }", 0, "5\n"),
    ("n += 1; if (n == 5) { print(1 / 0) }", 1, "5\n"),
], ids=["exit", "error"])
def test_exit_or_error_in_probe(prog, body, status, expect):
    t0 = time.monotonic()
    got, out, err, _ = ktapjit("-q", command=(prog, "100000000"),
                               script=f"var n = 0\ntrace probe:{prog}:add {{ {body} }}\ntrace_end {{ print(n) }}")
    assert (got, out) == (status, expect), err
    assert time.monotonic() - t0 < 15


@pytest.mark.parametrize("top, status", [("exit()", 0), ("var x = 1 / 0", 1)], ids=["exit", "error"])
def test_top_level_exit_or_error_after_binding(prog, top, status):
    got, out, err, child = ktapjit(command=(prog, "10"),
                                   script=f'trace probe:{prog}:add {{ }}\n{top}\ntrace_end {{ print("end") }}')
    assert (got, out, child) == (status, "end\n", [])


def test_unwritable_output_after_binding(prog, tmp_path):
    target = tmp_path / "no" / "such" / "out"
    got, out, err, _ = ktapjit("-o", str(target), command=(prog, "1"), script=f"trace probe:{prog}:add {{ }}")
    assert got == 2 and err.startswith("ktapjit: cannot write output file")


def _ours(pid: int) -> bool:
    return f"ktapjit_{pid}" in {g.name for g in (TRACEFS / "events").iterdir()}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_tracing_system_wide(prog, procs, sig):
    live = procs.ktapjit("-e", f"var n = 0\ntrace probe:{prog}:add {{ n += 1 }}\ntrace_end {{ print(n) }}")
    assert live.wait_tracing() == status_line(1)
    assert _ours(live.proc.pid)
    subprocess.run([prog, str(N)], check=True, capture_output=True)
    status, out, err = live.stop(sig)
    assert (status, out, err) == (0, f"{N}\n", status_line(1) + "\n")
    assert not _ours(live.proc.pid)


def test_sigterm_during_top_level_still_removes_the_events(prog, procs):
    """Top-level statements run after binding: the events exist already, and
    SIGTERM (whose default action would skip every cleanup) must not leak them."""
    live = procs.ktapjit("--max-loop", "2000000000", "-e",
                         f"trace probe:{prog}:add {{ }}\nvar i = 0\nwhile (true) {{ i += 1 }}")
    deadline = time.monotonic() + 20
    while not _ours(live.proc.pid):
        assert live.proc.poll() is None and time.monotonic() < deadline, "ktapjit never created its events"
        time.sleep(0.02)
    time.sleep(0.2)  # into the top-level loop
    status, out, err = live.stop(signal.SIGTERM, timeout=20)
    assert "Traceback" not in err and status in (0, 130), err
    assert not _ours(live.proc.pid)


def test_stale_group_of_a_killed_run_is_swept(prog, procs):
    live = procs.ktapjit("-e", f"trace probe:{prog}:add {{ }}")
    live.wait_tracing()
    live.proc.kill()
    live.proc.wait()
    assert _ours(live.proc.pid)  # SIGKILL: nothing could clean up
    status, out, err, _ = ktapjit("-q", command=(prog, "3"),
                                  script=f"var n = 0\ntrace probe:{prog}:greet {{ n += 1 }}\ntrace_end {{ print(n) }}")
    assert (status, out, err) == (0, "2\n", "")
    assert not _ours(live.proc.pid)
