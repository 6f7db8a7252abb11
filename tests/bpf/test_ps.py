"""`ktapjit ps`: the ktapjit programs loaded by any process, found through
the kernel's program ids and the frozen ``ktapjit_src`` map each carries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.bpf.conftest import needs_bpf

from ktapjit.bpf import source_map

pytestmark = needs_bpf

REPO = Path(__file__).resolve().parents[2]
KTAPJIT = [sys.executable, "-m", "ktapjit"]

SCRIPT = "var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }\n"

# A process that loads one program carrying SCRIPT, says so, and sleeps:
# a ktapjit session as the kernel sees it.
LOADER = textwrap.dedent('''
    import sys, time
    from ktapjit.bpf import syscall as sc
    from ktapjit.bpf.build import compile_ir
    from ktapjit.bpf.loader import load_object
    from ktapjit.bpf.objects import BpfSession
    from ktapjit.bpf.source_map import create_source_map
    from tests.bpf.test_programs import COUNT_IR

    name, script = sys.argv[1], sys.argv[2]
    with BpfSession() as s:
        carrier = create_source_map(s, script.encode(), ["ktapjit", "run", "-e", script])
        counts = s.create_map("counts", sc.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1)
        load_object(s, compile_ir(COUNT_IR.format(name=name, tgid=1)), {"counts": counts},
                    sc.BPF_PROG_TYPE_TRACEPOINT, bind=(carrier,))
        print("loaded", flush=True)
        time.sleep(120)
''')


def ktapjit_ps(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([*KTAPJIT, "ps", *args], capture_output=True, text=True, env=env, timeout=60)


def test_ps_shows_a_running_sessions_pid_program_and_source_until_it_is_killed():
    name = f"ps_probe{os.getpid() % 10000}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", LOADER, name, SCRIPT], stdout=subprocess.PIPE,
                             text=True, env=env, cwd=REPO)
    try:
        assert child.stdout.readline() == "loaded\n"
        shown = ktapjit_ps("-v")
        assert (shown.returncode, shown.stderr) == (0, "")
        lines = shown.stdout.splitlines()
        assert lines[0].split() == ["PID", "STARTED", "PROGRAM", "COMMAND"]
        mine = [i for i, line in enumerate(lines) if line.split()[:1] == [str(child.pid)]]
        assert len(mine) == 1
        row = lines[mine[0]].split(maxsplit=4)
        assert row[3] == name
        assert row[4] == r"ktapjit run -e 'var n = 0\ntrace syscalls:sys_enter_getppid { n += 1 }\ntrace_end { print(n) }\n'"
        source = lines[mine[0] + 1:mine[0] + 5]
        assert [line.strip() for line in source] == ["source:", *SCRIPT.splitlines()]
        brief = ktapjit_ps()
        assert "source:" not in brief.stdout and str(child.pid) in brief.stdout
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    after = ktapjit_ps()
    assert str(child.pid) not in after.stdout.split()


def test_a_map_of_that_name_that_is_not_ours_is_ignored():
    assert source_map.decode(b"not a ktapjit header at all, but long enough") is None
    carried = source_map.Carried(42, 7, b"print(1)\n", ("ktapjit", "run", "x.kp"))
    assert source_map.decode(source_map.encode(carried)) == carried


def test_ps_without_privileges_says_what_is_needed():
    # Everything imported first: nobody cannot read this Python's installation.
    code = ("import os, sys, locale, gettext\n"
            "from ktapjit import cli\n"
            "import ktapjit.bpf.loaded\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "sys.exit(cli.main(['ps']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "ktapjit: listing BPF objects: permission denied: needs root (CAP_SYS_ADMIN)\n"
