"""The ptrace backend for Linux x86-64: LinuxBackend (tracee.py), a facade over the modules beside it."""
