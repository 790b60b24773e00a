"""x86-64 for both backends: registers, ABIs, debug registers, the prologue emulator, machine facts.

The capstone memory-access decoder is `instrument.arch.x86_64.decode`, not
re-exported here: importing it loads capstone, which start-up paths avoid.
"""

from __future__ import annotations

from .abi import (
    ABI_SPECS, ARG_REGISTERS, Abi, AbiSpec, ReadMemory, WriteMemory, abi_of, arg_register, read_arg,
    write_arg,
)
from .debugregs import (
    ACCESSES, DEBUG_SLOTS, DR6, DR6_SINGLE_STEP, DR7, RESUME_FLAG, TRAP_FLAG, check_hardware_breakpoint,
    dr6_slots, dr7_enabled, dr7_is_watch, dr7_with_slot, dr7_without_slot, watch_aligned,
)
from .prologue import ENDBR64, STATUS_FLAGS, alu_result, compile_emulation, emulate
from .machine import MASK64, MAX_INSN, PAGE_SIZE, is_canonical, page_of, pages_of, to_signed64
from .registers import (
    ALL_REGISTERS, GENERAL_REGISTERS, REG64, RETURN_REGISTER, SUB_REGISTERS, USER_REGS_FIELDS,
    full_register, is_register, read_register, write_register,
)

__all__ = [
    "Abi", "abi_of", "ABI_SPECS", "AbiSpec", "ACCESSES", "ALL_REGISTERS", "arg_register",
    "alu_result", "ARG_REGISTERS", "check_hardware_breakpoint", "compile_emulation", "DEBUG_SLOTS", "DR6", "DR6_SINGLE_STEP",
    "dr6_slots", "DR7", "dr7_enabled", "dr7_is_watch", "dr7_with_slot", "dr7_without_slot",
    "emulate", "ENDBR64", "full_register", "GENERAL_REGISTERS", "is_canonical", "is_register",
    "MASK64", "MAX_INSN", "page_of", "PAGE_SIZE", "pages_of", "read_arg", "read_register",
    "ReadMemory", "REG64", "RESUME_FLAG", "RETURN_REGISTER", "STATUS_FLAGS", "SUB_REGISTERS", "to_signed64",
    "TRAP_FLAG", "USER_REGS_FIELDS", "watch_aligned", "write_arg", "write_register", "WriteMemory",
]
