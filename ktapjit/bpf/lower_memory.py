"""Memory read at event time, in a kernel-placed probe's own program:
`user_string(p)`, `kernel_string(p)` and `in_iowait()` (docs/bpf.md,
"Memory read at event time").

The value follows the same rules as the companion record the other engines
pair (bpf/companion.py reads, tracing/companion.py PairedReads.value makes
the value; docs/language-notes.md): at most min(--max-string, 4096) bytes,
up to the first NUL; nil for a NULL pointer or a fault; in_iowait() the
task_struct bit BTF locates, nil on a fault.

Each distinct read of a body is made once, after the program's skips and
before the body runs, whether or not the body reaches the call: every use
then sees one value, as every use of a companion's item does.
"""

from __future__ import annotations

from ktapjit.bpf.btf import member_bit_offset
from ktapjit.bpf.errors import BpfError
from ktapjit.bpf.kernel_plan import NotLowered
from ktapjit.bpf.layout import TAG_INT, TAG_NIL, TAG_STRING, pad8
from ktapjit.bpf.llvm_text import GET_CURRENT_TASK, PROBE_READ_KERNEL, PROBE_READ_KERNEL_STR, PROBE_READ_USER_STR
from ktapjit.bpf.lowered_value import NIL, Lowered
from ktapjit.ir.func import Value
from ktapjit.ir.ops import Op
from ktapjit.semantics.memory_read import MAX_STRING_READ, MemoryRead

_STRING_HELPER = {"user_string": PROBE_READ_USER_STR, "kernel_string": PROBE_READ_KERNEL_STR}
# The per-CPU scratch value holds the buffers: a per-CPU map value stays
# well below the allocator's 32 KiB unit.
MAX_READ_BYTES = 16 * 1024


def string_bound(max_string: int) -> int:
    """The most bytes a string read keeps (without its NUL)."""
    return min(max_string, MAX_STRING_READ)


def read_all(lw, values) -> dict:
    """aux -> Lowered for each distinct EventMemory among `values` (the
    body and what it calls), read now, in the program `lw` lowers."""
    reads: dict[str, Lowered] = {}
    room = 0
    for value in values:
        if value.op is not Op.EventMemory or value.aux in reads:
            continue
        read = MemoryRead.parse(value.aux)
        if read.kind != "in_iowait":
            room += pad8(string_bound(lw.state.limits.max_string) + 1)
            if room > MAX_READ_BYTES:
                raise NotLowered(f"{read}: the body's string reads need more than {MAX_READ_BYTES} bytes "
                                 "of scratch (lower --max-string)", value.span)
        reads[value.aux] = _read(lw, read, value)
    return reads


def _read(lw, read: MemoryRead, value: Value) -> Lowered:
    event = lw.event
    if event.kind != "tracepoint":
        raise NotLowered(f"{read} in a {event.kind} program (the kernel reads it from a tracepoint's record)",
                         value.span)
    if read.kind == "in_iowait":
        return _in_iowait(lw, value)
    name = read.field_name(event.arg_names)
    where = event.fields.get(name) if name is not None else None
    # As tracing.companion.read_item: no such field, a char[N] or an integer
    # that is no pointer's size gives nil.
    if where is None or where.string or where.size not in (4, 8):
        return NIL
    if not where.in_context:
        raise NotLowered(f"{read} (its pointer is not in the program's context)", value.span)
    return _string(lw, read.kind, where)


def _string(lw, kind: str, where) -> Lowered:
    """The string at the pointer field `where`, read into a scratch buffer;
    its length is the helper's count less the NUL. The bytes past the NUL
    are left as they were: strings are copied by their length (lower.py,
    "strings"), and a memset of up to 4 KiB is a call the BPF backend
    cannot make."""
    fn = lw.fn
    bound = string_bound(lw.state.limits.max_string)
    room = bound + 1
    buf = lw.scratch(room)
    raw = fn.load(f"i{where.size * 8}", fn.gep("%ctx", where.offset))
    pointer = raw if where.size == 8 else fn.op(f"zext i32 {raw} to i64")
    source = fn.op(f"inttoptr i64 {pointer} to ptr", "p")
    copied = fn.helper(_STRING_HELPER[kind], "i64", f"ptr {buf}, i64 {room}, ptr {source}")
    read = fn.op(f"and i1 {fn.op(f'icmp sgt i64 {copied}, 0')}, {fn.op(f'icmp ne i64 {pointer}, 0')}")
    length = lw.clamped(fn.op(f"select i1 {read}, i64 {fn.op(f'sub i64 {copied}, 1')}, i64 0"), bound)
    tag = fn.op(f"select i1 {read}, i64 {TAG_STRING}, i64 {TAG_NIL}")
    return Lowered(tag, length, buf, bound)


def _in_iowait(lw, value: Value) -> Lowered:
    """task_struct.in_iowait of the current task: its byte read with
    bpf_probe_read_kernel, the bit shifted out; nil when the read faults."""
    fn = lw.fn
    try:
        bit, _size = member_bit_offset("task_struct", "in_iowait")
    except BpfError as exc:
        raise NotLowered(f"in_iowait() ({exc})", value.span) from None
    task = fn.helper(GET_CURRENT_TASK, "i64", "")
    source = fn.op(f"inttoptr i64 {fn.op(f'add i64 {task}, {bit // 8}')} to ptr", "p")
    buf = fn.alloca(8)
    fn.store("i64", "0", buf)
    result = fn.helper(PROBE_READ_KERNEL, "i64", f"ptr {buf}, i64 1, ptr {source}")
    byte = fn.load("i8", buf)
    shifted = fn.op(f"lshr i8 {byte}, {bit % 8}")
    flag = fn.op(f"zext i8 {fn.op(f'and i8 {shifted}, 1')} to i64")
    read = fn.op(f"icmp sge i64 {result}, 0")
    return Lowered(fn.op(f"select i1 {read}, i64 {TAG_INT}, i64 {TAG_NIL}"),
                   fn.op(f"select i1 {read}, i64 {flag}, i64 0"))
