"""What the debugger knows about the processor, below every other layer: `instrument.arch.x86_64`.

Both backends, the engine and the analysis take registers, calling
conventions, debug-register encodings, the prologue emulator and the
memory-access decoder from here, so each x86 fact is written once.
"""
