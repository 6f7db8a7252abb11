"""ktapjit.bpf: the in-kernel engine (issue 13).

- The placement analysis (placement.py): which probe bodies may run in the
  kernel, and why the others may not (docs/bpf.md).
- The kernel layer: bpf(2) through ctypes, the maps and programs it creates
  (owned, closed on every exit path), eBPF objects built by llvmlite and
  loaded with their map relocations, attaching programs to perf event fds,
  and the ``ktapjit_src`` map that lets ``ktapjit ps`` show what runs in the
  kernel (docs/bpf-kernel.md).

How a lowering declares maps: the LLVM IR module declares one external
global per map, named after it (``@counts = external global i8``), and uses
its address where a helper takes a map (``bpf_map_lookup_elem(@counts,
...)``). The BPF backend emits an ``ld_imm64`` with an R_BPF_64_64
relocation against that undefined symbol; ``load_object`` is given a
``{name: Map}`` dict and patches each such instruction into a
``BPF_PSEUDO_MAP_FD`` load of the map's fd. Every global function definition
is one program (put each in its own section, e.g. ``ktapjit/NAME``); calls
between BPF functions are not supported: the lowering inlines them.

Errors are ``BpfError``: ``str()`` is one line a user can act on.

- Companion programs (companion.py, btf.py): for every engine, the small
  programs that read `user_string`/`kernel_string`/`in_iowait()` when a
  tracepoint fires and write them as bpf-output samples; the command line
  hands them to the live session (tracing/companion.py says what to read).
  A kernel-placed tracepoint probe makes the same reads in its own program
  (lower_memory.py), by the same rules.

- The engine (engine.py, ``--engine bpf``): an interpreter run for the
  user-space half, the kernel-placed probes lowered, loaded and attached to
  the live session's perf events (docs/bpf.md, "Running"); under -p and
  -- CMD the scope map and its two keeper programs (scope.py) tell the
  kernel probes which tasks are the traced process tree.

May import: ktapjit.diag, ktapjit.ir, ktapjit.semantics, ktapjit.events
(the perf_event ABI: ioctls on the perf fds programs attach to; event
formats), ktapjit.kernel_filter (a probe's /FILTER/, compiled into its
program), ktapjit.run_api and ktapjit.interp (the engine: the interpreter
runs the user-space half). Nothing imports llvmlite at package import; only ``build`` does,
when called.
"""
