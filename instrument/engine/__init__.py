"""The engine: runs a compiled Plan against a backend (session.run).

Its modules, each importing only those above it in this list: sites (an int3
byte), process (per-process state), inspect (backtraces, disassembly, crash
analysis), breakpoints (the per-kind state machines), stop (one stop of one
thread, as expressions and actions see it), records, arming (where each
breakpoint is armed), handlers (running actions and the handler table),
hits (exception dispatch), loop (the Session), session (run, cleanup, summary).
"""
