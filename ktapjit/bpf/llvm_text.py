"""A small writer of LLVM IR text for one BPF program: numbered temporaries,
labels, allocas gathered in the entry block, and the BPF helpers called as
clang calls them (through a constant function pointer, docs/bpf-kernel.md).

Text rather than llvmlite.ir: the package imports no llvmlite until a
program is built (bpf/__init__.py), and the programs are small."""

from __future__ import annotations

# Helper ids (include/uapi/linux/bpf.h, enum bpf_func_id).
MAP_LOOKUP_ELEM = 1
MAP_UPDATE_ELEM = 2
MAP_DELETE_ELEM = 3
KTIME_GET_NS = 5
GET_SMP_PROCESSOR_ID = 8
GET_CURRENT_PID_TGID = 14
GET_CURRENT_COMM = 16
GET_CURRENT_TASK = 35
PROBE_READ_USER = 112
PROBE_READ_KERNEL = 113
PROBE_READ_USER_STR = 114
PROBE_READ_KERNEL_STR = 115
GET_FUNC_IP = 173  # a uprobe's probed address (uprobes: Linux 6.6+)
RINGBUF_OUTPUT = 130


class FunctionText:
    """The body of one `define i64 @NAME(ptr %ctx)`."""

    def __init__(self, name: str):
        self.name = name
        self.allocas: list[str] = []
        self.lines: list[str] = []
        self.count = 0
        self.label = "start"  # the first block after the allocas

    def tmp(self, stem: str = "t") -> str:
        self.count += 1
        return f"%{stem}{self.count}"

    def new_label(self, stem: str = "L") -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def emit(self, text: str) -> None:
        self.lines.append("  " + text)

    def op(self, text: str, stem: str = "t") -> str:
        """`%tN = text`, returning %tN."""
        name = self.tmp(stem)
        self.emit(f"{name} = {text}")
        return name

    def start(self, label: str) -> None:
        self.lines.append(f"{label}:")
        self.label = label

    def br(self, label: str) -> None:
        self.emit(f"br label %{label}")

    def cond_br(self, cond: str, yes: str, no: str) -> None:
        self.emit(f"br i1 {cond}, label %{yes}, label %{no}")

    def alloca(self, size: int) -> str:
        """An 8-aligned stack buffer of `size` bytes, uninitialised, in the
        entry block (the BPF backend cannot allocate stack dynamically)."""
        name = f"%buf{len(self.allocas)}"
        self.allocas.append(f"  {name} = alloca [{max(size, 8)} x i8], align 8")
        return name

    def helper(self, helper_id: int, result: str, args: str) -> str:
        return self.op(f"call {result} inttoptr (i64 {helper_id} to ptr)({args})")

    def helper_void(self, helper_id: int, args: str) -> None:
        self.emit(f"call i64 inttoptr (i64 {helper_id} to ptr)({args})")

    def gep(self, base: str, offset: int) -> str:
        if offset == 0:
            return base
        return self.op(f"getelementptr i8, ptr {base}, i64 {offset}", "p")

    def load(self, ty: str, ptr: str) -> str:
        return self.op(f"load {ty}, ptr {ptr}")

    def store(self, ty: str, value: str, ptr: str) -> None:
        self.emit(f"store {ty} {value}, ptr {ptr}")

    def memset(self, ptr: str, size: int) -> None:
        if size > 0:
            self.emit(f"call void @llvm.memset.p0.i64(ptr align 8 {ptr}, i8 0, i64 {size}, i1 false)")

    def memcpy(self, dst: str, src: str, size: int) -> None:
        if size > 0:
            self.emit(f"call void @llvm.memcpy.p0.p0.i64(ptr align 8 {dst}, ptr align 8 {src}, i64 {size}, i1 false)")

    def text(self) -> str:
        body = "\n".join(self.allocas + ["  br label %start", "start:"] + self.lines)
        return (f'define i64 @{self.name}(ptr %ctx) section "ktapjit/{self.name}" {{\n'
                f"entry:\n{body}\n}}\n")


def module_text(functions: list[FunctionText], maps: list[str]) -> str:
    head = [f"@{m} = external global i8" for m in maps]
    head += ["declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)",
             "declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)",
             "declare {i64, i1} @llvm.sadd.with.overflow.i64(i64, i64)"]
    return "\n".join(head) + "\n\n" + "\n".join(f.text() for f in functions)
