"""instrument: a declarative, YAML-driven debugger.

    from instrument import load_recipe, compile_plan, run
"""

from __future__ import annotations

from typing import Any

from .version import __version__

__all__ = ["__version__", "load_recipe", "compile_plan", "run"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `instrument --help` stays fast and
    # `import instrument` pulls in neither YAML nor ctypes.
    if name == "load_recipe":
        from .recipe.load import load_recipe
        return load_recipe
    if name == "compile_plan":
        from .compiler.plan import compile_plan
        return compile_plan
    if name == "run":
        from .engine.session import run
        return run
    raise AttributeError(name)
