"""Programs built from LLVM IR by llvmlite, loaded with their maps,
refused by the verifier, and cleaned up on every exit path."""

from __future__ import annotations

import os
import re
import time

import pytest
from tests.bpf.conftest import needs_bpf, open_fds, our_program_ids

from ktapjit.bpf import syscall as sc
from ktapjit.bpf.build import compile_ir
from ktapjit.bpf.errors import BpfError, VerifierError, report
from ktapjit.bpf.loader import load_object
from ktapjit.bpf.object_file import R_BPF_64_64, BpfObject
from ktapjit.bpf.objects import BpfSession

pytestmark = needs_bpf

# A tracepoint program that counts, in slot 0 of the per-CPU array @counts,
# the hits made by process TGID: the lowering's map convention, by hand.
COUNT_IR = r"""
@counts = external global i8

define i64 @{name}(ptr %ctx) section "ktapjit/{name}" {{
entry:
  %key = alloca i32
  %pid_tgid = call i64 inttoptr (i64 14 to ptr)()          ; bpf_get_current_pid_tgid
  %tgid = lshr i64 %pid_tgid, 32
  %mine = icmp eq i64 %tgid, {tgid}
  br i1 %mine, label %count, label %done
count:
  store i32 0, ptr %key
  %slot = call ptr inttoptr (i64 1 to ptr)(ptr @counts, ptr %key)   ; bpf_map_lookup_elem
  %absent = icmp eq ptr %slot, null
  br i1 %absent, label %done, label %add
add:
  %old = load i64, ptr %slot
  %new = add i64 %old, 1
  store i64 %new, ptr %slot
  br label %done
done:
  ret i64 0
}}
"""

# Reads 8 bytes at offset 16384 of a tracepoint's context: past the
# PERF_MAX_TRACE_SIZE (8 KiB) a tracepoint program may read.
PAST_CONTEXT_IR = r"""
define i64 @{name}(ptr %ctx) section "ktapjit/{name}" {{
  %at = getelementptr i8, ptr %ctx, i64 16384
  %v = load i64, ptr %at
  ret i64 %v
}}
"""

CALL_IR = r"""
define internal i64 @helper(i64 %x) noinline {
  %y = mul i64 %x, 3
  ret i64 %y
}

define i64 @caller(ptr %ctx) section "ktapjit/caller" {
  %p = ptrtoint ptr %ctx to i64
  %r = call i64 @helper(i64 %p)
  ret i64 %r
}
"""

GLOBAL_DATA_IR = r"""
@total = global i64 0

define i64 @bumps(ptr %ctx) section "ktapjit/bumps" {
  %old = load volatile i64, ptr @total
  %new = add i64 %old, 1
  store volatile i64 %new, ptr @total
  ret i64 0
}
"""


def unique(stem: str) -> str:
    """A program name no other test or process is using (15 chars at most)."""
    return f"{stem}{os.getpid() % 100000}{time.monotonic_ns() % 1000}"[:15]


def count_object(name: str, tgid: int) -> bytes:
    return compile_ir(COUNT_IR.format(name=name, tgid=tgid))


def test_a_map_reference_becomes_an_ld_imm64_relocation_against_the_map_name():
    obj = BpfObject(count_object("counter", 1))
    [function] = obj.functions()
    relocations = obj.relocations(obj.sections[function.section])
    assert [(r.type, r.symbol.name) for r in relocations] == [(R_BPF_64_64, "counts")]


def test_a_program_is_loaded_with_its_map_and_both_are_listed_by_the_kernel(no_leaks):
    name = unique("t_load")
    with BpfSession() as s:
        counts = s.create_map("counts", sc.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1)
        programs = load_object(s, count_object(name, 1), {"counts": counts}, sc.BPF_PROG_TYPE_TRACEPOINT)
        program = programs[name]
        info = program.info()
        assert (info.name.decode(), info.type) == (name, sc.BPF_PROG_TYPE_TRACEPOINT)
        assert program.map_ids() == [counts.info().id]
        assert info.id in sc.prog_ids()
        listed = [(prog_id, found.name.decode(), maps) for prog_id, found, maps in sc.loaded_programs()
                  if prog_id == info.id]
        assert listed == [(info.id, name, [counts.info().id])]


@pytest.mark.parametrize("ir, maps, message", [
    (COUNT_IR.format(name="counter", tgid=1), {},
     "BPF program 'counter' references map 'counts', which was not given (maps given: none)"),
    (CALL_IR, {"counts": None},
     "BPF program 'caller' calls function 'helper': calls between BPF functions are not supported (inline them)"),
    (GLOBAL_DATA_IR, {},
     "BPF program 'bumps' uses global data"),
])
def test_an_object_the_loader_cannot_take_says_why(ir, maps, message, no_leaks):
    with BpfSession() as s, pytest.raises(BpfError) as caught:
        load_object(s, compile_ir(ir), maps, sc.BPF_PROG_TYPE_TRACEPOINT)
    assert str(caught.value).startswith(message)


def test_ir_the_backend_cannot_parse_is_one_line():
    with pytest.raises(BpfError) as caught:
        compile_ir("define i64 @broken( {")
    assert str(caught.value).startswith("the BPF backend cannot compile the program: ")
    assert "\n" not in str(caught.value)


def test_a_program_the_verifier_rejects_names_it_in_one_line_and_keeps_the_log(no_leaks):
    name = unique("t_past")
    with BpfSession() as s, pytest.raises(VerifierError) as caught:
        load_object(s, compile_ir(PAST_CONTEXT_IR.format(name=name)), {}, sc.BPF_PROG_TYPE_TRACEPOINT)
    message = str(caught.value)
    assert re.fullmatch(f"the BPF verifier rejected program '{name}': invalid bpf_context access "
                        r"off=16384 size=\d \(-v shows its log\)", message)
    assert caught.value.program == name
    assert "invalid bpf_context access off=16384" in caught.value.log
    assert caught.value.log.count("\n") >= 2  # the whole log, instruction by instruction
    assert report(caught.value) == message
    assert report(caught.value, verbose=True) == f"{message}\nverifier log:\n{caught.value.log.rstrip()}"


def test_an_unsupported_program_type_names_the_feature():
    with BpfSession() as s, pytest.raises(BpfError) as caught:
        s.load_program("t_type", 9999, bytes.fromhex("b700000000000000 9500000000000000".replace(" ", "")))
    assert str(caught.value) == ("cannot load BPF program 't_type': this kernel does not support type 9999 "
                                 "programs (EINVAL without a verifier log)")


class Boom(Exception):
    pass


def _load_then(outcome: str, name: str) -> None:
    with BpfSession() as s:
        counts = s.create_map("counts", sc.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1)
        load_object(s, count_object(name, 1), {"counts": counts}, sc.BPF_PROG_TYPE_TRACEPOINT)
        s.create_map("more", sc.BPF_MAP_TYPE_HASH, 4, 8, 8)
        if outcome == "verifier":
            load_object(s, compile_ir(PAST_CONTEXT_IR.format(name=name + "x")), {},
                        sc.BPF_PROG_TYPE_TRACEPOINT)
        if outcome == "exception":
            raise Boom()


@pytest.mark.parametrize("outcome, raised", [("success", None), ("verifier", VerifierError),
                                             ("exception", Boom)])
def test_the_session_closes_every_fd_on_every_exit_path(outcome, raised):
    name = unique("t_exit")
    before = open_fds()
    if raised is None:
        _load_then(outcome, name)
    else:
        with pytest.raises(raised):
            _load_then(outcome, name)
    assert open_fds() - before == set()
    assert our_program_ids({name, (name + "x")[:15]}) == []


def test_a_log_too_long_for_its_first_buffer_is_read_whole(monkeypatch):
    name = unique("t_grow")
    obj = compile_ir(PAST_CONTEXT_IR.format(name=name))
    logs = []
    for start in (sc.LOG_START, 16):  # 16 bytes: the kernel answers ENOSPC, the loader grows it
        monkeypatch.setattr(sc, "LOG_START", start)
        with BpfSession() as s, pytest.raises(VerifierError) as caught:
            load_object(s, obj, {}, sc.BPF_PROG_TYPE_TRACEPOINT)
        logs.append(caught.value.log)
    assert len(logs[0]) > 64
    assert logs[1] == logs[0]
