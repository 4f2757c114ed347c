"""pydantic's validation errors as one paragraph that names the file, the key and the fix."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import ValidationError

from gridcv.config.schema import ExperimentSpec
from gridcv.errors import did_you_mean


def explain(path: str | Path, exc: ValidationError, raw: Mapping[str, Any] | None = None) -> str:
    """The message of a :class:`~gridcv.errors.ConfigError` for a failed validation.

    Args:
        path: The experiment file, as the user named it.
        exc: pydantic's error.
        raw: The file's content as read: a grid of the wrong shape is explained from it
            (pydantic reports each member of the grid's union, which says little).
    """
    problems = []
    grid = grid_problem(raw["grid"]) if raw is not None and "grid" in raw else None
    for err in exc.errors():
        if grid is not None and err["loc"][:1] == ("grid",):
            problems.append(grid)
            continue
        loc, model = _walk(tuple(err["loc"]))
        key = ".".join(loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            problems.append(unknown_key(loc[-1], ".".join(loc[:-1]), _known_keys(tuple(err["loc"])[:-1])))
        elif kind == "missing":
            problems.append(f"required key '{key}' is missing; add it")
        elif kind in ("literal_error", "union_tag_invalid"):
            ctx = err.get("ctx", {})
            expected = ctx.get("expected") or ctx.get("expected_tags", "")
            value = err["input"] if kind == "literal_error" else ctx.get("tag")
            key = key if kind == "literal_error" else f"{key}.kind"
            problems.append(f"key '{key}' is {value!r} but must be one of {expected}")
        elif kind == "union_tag_not_found":
            tags = ", ".join(repr(t) for t in _union_tags(model))
            problems.append(f"required key '{key}.kind' is missing; add it (one of {tags})")
        else:
            problems.append(f"key '{key}' has value {err['input']!r}: {err['msg']}")
    problems = list(dict.fromkeys(problems))
    return f"{path}: " + "; ".join(problems) + ". See experiments/digits.yaml for a valid file."


def grid_problem(grid: Any) -> str | None:
    """What is wrong with the shape of a ``grid:`` as written, or None when it is a dict (or list of dicts) of lists."""
    if isinstance(grid, dict):
        return _grid_values_problem("grid", grid)
    if not isinstance(grid, list):
        return (
            f"key 'grid' is {grid!r}; the grid maps parameter names to lists of the values to try "
            "(filters: [8, 16]), or is a list of such mappings"
        )
    for i, entry in enumerate(grid):
        where = f"grid[{i}]"
        if not isinstance(entry, dict):
            return (
                f"key '{where}' is {entry!r}; a grid given as a list holds mappings of parameter names to "
                "lists of the values to try (- {filters: [8, 16]})"
            )
        if problem := _grid_values_problem(where, entry):
            return problem
    return None


def _grid_values_problem(where: str, grid: dict[Any, Any]) -> str | None:
    """``key 'grid.filters' is 8; grid values are lists of the values to try: write `filters: [8]```."""
    bad = [(key, value) for key, value in grid.items() if not isinstance(value, list)]
    if not bad:
        return None
    found = " and ".join(f"key '{where}.{key}' is {value!r}" for key, value in bad)
    fixes = " and ".join(f"`{key}: {yaml.safe_dump([value], default_flow_style=True).strip()}`" for key, value in bad)
    return f"{found}; grid values are lists of the values to try: write {fixes}"


def unknown_key(key: str, section: str, known: list[str]) -> str:
    """``unknown key 'x' in 'fit' (did you mean 'y'?); valid keys there are ...``."""
    where = f"in '{section}'" if section else "at the top level"
    return f"unknown key '{key}' {where}{did_you_mean(key, known, aside=True)}; valid keys there are {', '.join(known)}"


def _members(annotation: Any) -> list[Any]:
    """The pydantic models an annotation can hold (unwrapping Annotated, unions, Optional)."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, type(int | None)):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation] if hasattr(annotation, "model_fields") else []


def _union_tags(annotation: Any) -> list[str]:
    tags: list[str] = []
    for member in _members(annotation):
        field = member.model_fields.get("kind")
        if field is not None and get_origin(field.annotation) is Literal:
            tags.extend(get_args(field.annotation))
    return tags


def _walk(raw_loc: tuple[Any, ...]) -> tuple[tuple[str, ...], Any]:
    """An error location without pydantic's union tags, and the annotation it ends at.

    pydantic puts the chosen member of a union into the location: the tag of a
    discriminated union (``data.images.root``) or a type name (``grid.dict[...]``).
    """
    loc: list[str] = []
    annotation: Any = ExperimentSpec
    for part in raw_loc:
        members = _members(annotation)
        if len(members) > 1 and part in _union_tags(annotation):
            annotation = next(m for m in members if part in _union_tags(m))
            continue
        if _is_union_tag(part):
            continue
        loc.append(str(part))
        field = next((m.model_fields[str(part)] for m in members if str(part) in m.model_fields), None)
        annotation = field.annotation if field is not None else None
    return tuple(loc), annotation


def _is_union_tag(part: Any) -> bool:
    # pydantic adds the union member's type to the location (e.g. 'dict[str,list[any]]').
    return isinstance(part, str) and ("[" in part or part in {"str", "list", "int", "bool"})


def _known_keys(raw_loc: tuple[Any, ...]) -> list[str]:
    """The keys valid in the section at a (raw pydantic) location; [] if it is not a section."""
    _, annotation = _walk(raw_loc)
    members = _members(annotation)
    return list(members[0].model_fields) if len(members) == 1 else []
