"""Memory read at event time: user_string(), kernel_string() and in_iowait()
live under every engine, their companion records kept by --record, replayed
to the same output, read by `perf script`, and nil (with one warning) on a
recording without them. The workloads are C, built here, so the paths
opened and the programs executed are exactly known."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest

from ktapjit.cli import main
from tests.cbuild import build_c
from tests.tracing import runcli
from tests.tracing.conftest import REPO, live_skip_reason, status_line
from tests.tracing.runcli import ktapjit

_REASON = live_skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("clean_tracing_state")]

# `opener DIR N`: opens DIR/start, then DIR/file-0 .. DIR/file-(N-1), then
# passes openat a NULL path, then a 300-byte name. Every path is built on
# the stack, so its page is in memory when the kernel reads it.
OPENER_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
    char path[4096];
    int n = atoi(argv[2]);
    snprintf(path, sizeof path, "%s/start", argv[1]);
    close(open(path, O_RDONLY | O_CREAT, 0600));
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/file-%d", argv[1], i);
        int fd = open(path, O_RDONLY | O_CREAT, 0600);
        if (fd >= 0) close(fd);
    }
    syscall(SYS_openat, AT_FDCWD, (char *)0, O_RDONLY);
    memset(path, 'x', 300);
    path[300] = 0;
    open(path, O_RDONLY);
    return 0;
}
"""

# `spawner PROG...`: runs each PROG (an absolute path) in turn, fork+execve.
SPAWNER_C = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        char prog[256];
        snprintf(prog, sizeof prog, "%s", argv[i]);
        pid_t pid = fork();
        if (pid == 0) {
            char *args[] = {prog, 0};
            char *env[] = {0};
            execve(prog, args, env);
            _exit(127);
        }
        waitpid(pid, 0, 0);
    }
    return 0;
}
"""

# `napper MS...`: one sleep of each MS ms, in turn.
NAPPER_C = r"""
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        long ms = atol(argv[i]);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, 0);
    }
    return 0;
}
"""

OPENS = 'trace syscalls:sys_enter_openat { if (execname == "opener") { print(user_string(args.filename)) } }'


@pytest.fixture(autouse=True, params=["interp", "jit", "bpf"])
def engine(request):
    """Every test here, under each engine (the bpf engine runs these probes in user space)."""
    runcli.ENGINE = request.param
    yield request.param
    runcli.ENGINE = "interp"


@pytest.fixture(scope="session")
def opener(tmp_path_factory) -> Path:
    return build_c(tmp_path_factory, "opener", OPENER_C, "-O2", purpose="the opener")


@pytest.fixture(scope="session")
def spawner(tmp_path_factory) -> Path:
    return build_c(tmp_path_factory, "spawner", SPAWNER_C, "-O2", purpose="the spawner")


@pytest.fixture(scope="session")
def napper(tmp_path_factory) -> Path:
    return build_c(tmp_path_factory, "napper", NAPPER_C, "-O2", purpose="the napper")


def after(marker: str, out: str) -> list[str]:
    """The lines after `marker` (the dynamic loader's own opens come before it)."""
    lines = out.splitlines()
    assert marker in lines, out
    return lines[lines.index(marker) + 1:]


def expected_opens(d: Path, n: int, bound: int = 4096) -> list[str]:
    return [f"{d}/file-{i}"[:bound] for i in range(n)] + ["nil", ("x" * 300)[:bound]]


def test_user_string_reads_each_path_opened(opener, tmp_path):
    status, out, err = ktapjit("--", str(opener), str(tmp_path), "3", script=OPENS)
    assert (status, err) == (0, status_line(1) + "\n")
    assert after(f"{tmp_path}/start", out) == expected_opens(tmp_path, 3)


def test_a_string_is_cut_to_max_string_bytes(opener, tmp_path):
    status, out, err = ktapjit("-q", "--max-string", "12", "--", str(opener), str(tmp_path), "2", script=OPENS)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    start = f"{tmp_path}/start"[:12]
    assert lines[-4:] == [f"{tmp_path}/file-0"[:12], f"{tmp_path}/file-1"[:12], "nil", "x" * 12]
    assert start in lines


def test_argn_names_the_same_field_as_args_as_ktap_counts_them(opener, tmp_path):
    script = ('trace syscalls:sys_enter_openat { if (execname == "opener") '
              '{ print(user_string(arg2) == user_string(args.filename), user_string(arg2)) } }')
    status, out, err = ktapjit("-q", "--", str(opener), str(tmp_path), "1", script=script)
    assert status == 0, err
    assert after(f"true\t{tmp_path}/start", out) == [f"true\t{tmp_path}/file-0", "true\tnil", "true\t" + "x" * 300]


def test_several_reads_on_one_event(opener, tmp_path):
    script = ('trace syscalls:sys_enter_openat { if (execname == "opener") '
              '{ print(in_iowait(), user_string(args.filename), kernel_string(args.filename)) } }')
    status, out, err = ktapjit("-q", "--max-string", "1", "--", str(opener), str(tmp_path), "1", script=script)
    assert status == 0, err
    assert out.splitlines()[-3:] == ["0\t/\tnil", "0\tnil\tnil", "0\tx\tnil"]


def test_kernel_string_reads_kernel_memory_and_user_string_faults_there(napper):
    # rcu_utilization's `s` points at a string constant in the kernel.
    script = ('var seen = {}\ntrace rcu:rcu_utilization { seen[kernel_string(args.s) .. " " .. '
              'stringof(user_string(args.s))] = 1 }\n'
              'trace_end { for (k, v in pairs(seen)) { print(k) } }')
    status, out, err = ktapjit("-q", "--", str(napper), "20", "20", "20", script=script)
    assert status == 0, err
    assert "Start context switch nil" in out.splitlines(), out


def test_record_then_replay_prints_what_the_live_run_printed(opener, tmp_path, engine):
    data = tmp_path / "opens.data"
    status, live, err = ktapjit("-q", "--record", str(data), "--", str(opener), str(tmp_path), "4", script=OPENS)
    assert status == 0, err
    assert after(f"{tmp_path}/start", live) == expected_opens(tmp_path, 4)
    for replay_engine in ("interp", "jit"):
        status, replayed, err = run("--engine", replay_engine, "--replay", str(data), "-e", OPENS)
        assert (status, replayed, err) == (0, live, "")


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf (linux-perf) is not installed")
def test_perf_script_reads_a_recording_with_companions(opener, tmp_path):
    data = tmp_path / "opens.data"
    status, _out, err = ktapjit("-q", "--record", str(data), "--", str(opener), str(tmp_path), "2", script=OPENS)
    assert status == 0, err
    shown = subprocess.run(["perf", "script", "-F", "comm,event", "-i", str(data)], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    events = [line.split()[-1] for line in shown.stdout.splitlines() if line.split()[:1] == ["opener"]]
    assert "ktapjit:companion:" in events and "syscalls:sys_enter_openat:" in events
    # Each of the opener's samples comes right after its own companion.
    for i, event in enumerate(events):
        if event == "syscalls:sys_enter_openat:":
            assert events[i - 1] == "ktapjit:companion:", events


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf (linux-perf) is not installed")
def test_a_perf_record_file_gives_nil_and_one_warning(opener, tmp_path):
    data = tmp_path / "perf.data"
    subprocess.run(["perf", "record", "-q", "-e", "syscalls:sys_enter_openat", "-o", str(data), "--",
                    str(opener), str(tmp_path), "2"], check=True, capture_output=True)
    status, out, err = run("--replay", str(data), "-e", OPENS.replace("print(", "print(in_iowait(), "))
    assert status == 0
    assert set(out.splitlines()) == {"nil\tnil"} and len(out.splitlines()) >= 5
    assert err == (f"ktapjit: warning: '{data}' holds no companion records (it was not made by ktapjit run "
                   "--record): user_string(), kernel_string() and in_iowait() give nil\n")


def test_a_corrupt_companion_record_is_an_error_with_its_offset(opener, tmp_path):
    data = tmp_path / "opens.data"
    status, _out, err = ktapjit("-q", "--record", str(data), "--", str(opener), str(tmp_path), "1", script=OPENS)
    assert status == 0, err
    raw = bytearray(data.read_bytes())
    at = raw.index(b"KTC1")
    raw[at:at + 4] = b"KTCX"
    data.write_bytes(bytes(raw))
    status, _out, err = run("--replay", str(data), "-e", OPENS)
    assert status != 0
    lines = err.splitlines()
    assert any("corrupt companion record: bad magic 0x5843544b (at byte offset" in line for line in lines), err


def test_execsnoop_names_each_program_executed(spawner):
    status, out, err = ktapjit("-q", "--", str(spawner), "/usr/bin/true", "/usr/bin/env",
                               script=(REPO / "examples" / "execsnoop.kp").read_text())
    assert status == 0, err
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["PID", "PARENT", "PROGRAM"]
    # The command's own exec first (named as this process, before it became the spawner).
    assert [row[1:] for row in rows[1:]] == [[rows[1][1], str(spawner)], ["spawner", "/usr/bin/true"],
                                             ["spawner", "/usr/bin/env"]]


def test_opensnoop_names_each_path_opened(opener, tmp_path):
    status, out, err = ktapjit("-q", "--", str(opener), str(tmp_path), "2",
                               script=(REPO / "examples" / "opensnoop.kp").read_text())
    assert status == 0, err
    rows = [line.split(None, 2) for line in out.splitlines()]
    assert rows[0] == ["PID", "COMM", "PATH"]
    paths = after(f"{tmp_path}/start", "\n".join(row[2] for row in rows))
    assert paths == expected_opens(tmp_path, 2)
    assert {row[1] for row in rows[1:]} == {"opener"}


def test_offcputime_counts_a_sleepers_naps_and_no_iowait(napper, procs):
    live = procs.ktapjit(str(REPO / "examples" / "offcputime.kp"))
    live.wait_tracing()
    subprocess.run([str(napper), "100", "200", "400"], check=True)
    status, out, err = live.stop()
    assert status == 0, err
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    off_us, io_us = (int(x) for x in rows["napper"])
    # All three naps (700 ms) when every sched_switch sample arrives; on a
    # shared machine another tracer's BPF program on sched_switch that
    # returns 0 drops samples (of every perf event there), so only one nap
    # is certain.
    assert 100_000 <= off_us < 1_400_000 and io_us == 0, out + err


def test_in_iowait_is_one_for_a_task_leaving_for_direct_io(procs, tmp_path):
    target = REPO / ".iowait-test"  # on the disk: tmpfs would never wait for I/O
    script = ('var io = {}\ntrace sched:sched_switch { if (args.prev_comm == "dd") { io[in_iowait()] += 1 } }\n'
              'trace_end { print(io[1] != nil, io[2] == nil) }')
    live = procs.ktapjit("-e", script)
    live.wait_tracing()
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=4k", "count=100", "oflag=direct,sync"],
                       check=True, capture_output=True)
    finally:
        target.unlink(missing_ok=True)
    status, out, err = live.stop()
    assert (status, out) == (0, "true\ttrue\n"), err


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", *args], stdout=out, stderr=err)
    return status, out.getvalue().decode("latin-1"), err.getvalue().decode("latin-1")
