"""The recipes shipped inside the package (instrument/recipes/*.yaml), found by name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any


def _folder() -> Path:
    return Path(str(resources.files("instrument") / "recipes"))


def shipped_recipe_path(name: str) -> Path | None:
    for suffix in (".yaml", ".yml"):
        path = _folder() / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def shipped_recipes() -> list[tuple[Path, Any]]:
    """(path, Recipe) for every shipped recipe, sorted by name."""
    from .load import load_recipe

    return [(path, load_recipe(str(path))) for path in sorted(_folder().glob("*.yaml"))]
