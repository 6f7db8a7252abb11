"""A KernelPlan made real: its maps created and its programs built and
loaded into one BpfSession (which owns and closes them all)."""

from __future__ import annotations

from dataclasses import dataclass

from ktapjit.bpf.build import compile_ir
from ktapjit.bpf.kernel_plan import KernelPlan, KernelProgram
from ktapjit.bpf.loader import load_object
from ktapjit.bpf.objects import BpfSession, Map, Program


@dataclass
class LoadedPlan:
    plan: KernelPlan
    maps: dict[str, Map]  # by map name: the script cells' (MapSpec.name) and the aux maps
    programs: dict[str, Program]  # by KernelProgram.name

    def cell_map(self, cell: str) -> Map:
        return self.maps[self.plan.map_for(cell).name]


def create_maps(session: BpfSession, plan: KernelPlan) -> dict[str, Map]:
    maps = {}
    for spec in plan.maps:
        maps[spec.name] = session.create_map(spec.name, spec.map_type, spec.key_size, spec.value.size,
                                             spec.max_entries, spec.flags)
    for aux in plan.aux_maps:
        maps[aux.name] = session.create_map(aux.name, aux.map_type, aux.key_size, aux.value_size,
                                            aux.max_entries, aux.flags)
    return maps


def load_program(session: BpfSession, program: KernelProgram, maps: dict[str, Map],
                 bind: tuple[Map, ...] = ()) -> Program:
    """Build and load one program; a BpfError (VerifierError) names it."""
    obj = compile_ir(program.llvm_ir)
    return load_object(session, obj, maps, program.prog_type, bind)[program.name]


def load_plan(session: BpfSession, plan: KernelPlan, bind: tuple[Map, ...] = ()) -> LoadedPlan:
    """Every map and program of the plan; `bind`: maps each program is
    bound to without using them (the ``ktapjit_src`` source map)."""
    maps = create_maps(session, plan)
    programs = {p.name: load_program(session, p, maps, bind) for p in plan.programs}
    return LoadedPlan(plan, maps, programs)
