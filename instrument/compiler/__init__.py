"""The compiler: recipe model -> Plan (plan.compile_plan).

model (the Plan's frozen values), table (the handler table), sections (the
registry of handler sections: events:, crash:, ...), sampling (which hardware
breakpoints are sampled), resolve (addresses against the program on disk), plan.
"""
