"""ktapjit.bpf: the in-kernel engine: the placement analysis (which probe
bodies may run in the kernel, and why the others may not; docs/bpf.md), the
kernel layer (bpf(2), loader, attach) and the lowering of the IR to eBPF.

May import: ktapjit.ir, ktapjit.semantics, ktapjit.diag, ktapjit.events.
"""
