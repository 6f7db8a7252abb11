"""Compiled bundles: a script's native code for one target in one file, with
its source, its command line and the versions it was built with.

``format`` reads and writes the container and refuses a bundle this ktapjit
cannot run; ``build`` makes one (`ktapjit compile`); ``load`` turns one into
an engine for `ktapjit run FILE` without LLVM; ``emulate`` runs an AArch64
bundle over a recording on another machine, under qemu user-mode emulation.

May import: ktapjit.jit, ktapjit.compiler, ktapjit.ir, ktapjit.semantics,
ktapjit.diag, ktapjit.cache_paths, stdlib (and, in ``build`` only,
llvmlite.binding).
"""
