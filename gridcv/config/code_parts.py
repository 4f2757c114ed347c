"""What of a Python module one function depends on: the parts the fingerprint hashes.

A results folder must refuse a changed model builder, but not an edit to an
unrelated function of the same ``models.py``. So the builder is hashed at
the grain of the module's top-level statements, read with :mod:`ast` and
never imported (importing a builder would import Keras in the parent):

- the statement that defines the builder (decorators and default arguments
  included: they are part of its source);
- transitively, every top-level function, class, constant or import whose
  name one of those statements uses (an import as its own text, e.g.
  ``from keras import layers``);
- top-level code that runs on import and binds no name (``tf.random.set_seed(0)``,
  ``os.environ[...] = ...``): it may change results whatever the builder
  calls. ``if __name__ == "__main__":`` blocks do not run on import and are left out.

Each part is its source text with comments, blank lines and trailing
spaces removed (so a comment or a blank line is not a change; anything
else in the text is). The text, not the syntax tree, is hashed: an upgrade
of Python does not change it. Names are found syntactically: a function
that merely shares its name with a local variable is included, and code
reached only through a string (``globals()["f"]``, ``getattr(module, "f")``)
is missed. Code in other files (a sibling ``layers.py`` the builder imports)
is not followed either: it counts only as the import statement's text.
"""

from __future__ import annotations

import ast
import hashlib
import io
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass

MODULE_CODE = "module-level code"  # the part holding top-level code that binds no name


@dataclass(frozen=True)
class _Unit:
    """One top-level statement (or one imported name): what it binds, uses, and its text."""

    label: str
    binds: frozenset[str]
    uses: frozenset[str]
    text: str


@dataclass(frozen=True)
class CodeParts:
    """The parts of a module one function depends on.

    Attributes:
        own: The label of the part that defines the function (``build()``).
        parts: Part label (``build()``, ``conv_block()``, ``Block``, ``UNITS``,
            ``layers`` for an import, ``module-level code``) -> a 16-hex-digit
            digest of its text.
    """

    own: str
    parts: dict[str, str]


def code_parts(source: str, name: str) -> CodeParts:
    """The parts of a module's source that the top-level function (or class) ``name`` depends on.

    A name that no statement binds visibly (``from x import *``, ``globals()``
    tricks) makes the whole file one part.

    Raises:
        SyntaxError: The source does not parse.
    """
    tree = ast.parse(source)
    lines = _without_comments(source)
    units = [u for node in tree.body for u in _units(node, lines)]
    own = next((u.label for u in units if name in u.binds), None)
    if own is None:
        return CodeParts(name, {name: _hash("\n".join(line for line in lines if line))})
    return CodeParts(own, _collect(units, name))


def _collect(units: list[_Unit], name: str) -> dict[str, str]:
    """The units ``name`` reaches, and module-level code with what it reaches; texts of one label joined."""
    reached = _reach(units, {name})
    reached = _reach(units, reached | {n for u in units if not u.binds for n in u.uses})
    texts: dict[str, list[str]] = {}
    for unit in units:
        if not unit.binds or unit.binds & reached:
            texts.setdefault(unit.label, []).append(unit.text)
    return {label: _hash("\n".join(parts)) for label, parts in sorted(texts.items())}


def _reach(units: list[_Unit], start: set[str]) -> set[str]:
    """The names ``start`` uses, transitively, through the units that bind them."""
    reached: set[str] = set()
    frontier = list(start)
    while frontier:
        current = frontier.pop()
        if current in reached:
            continue
        reached.add(current)
        for unit in units:
            if current in unit.binds:
                frontier.extend(unit.uses - reached)
    return reached


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _units(node: ast.stmt, lines: list[str]) -> Iterator[_Unit]:
    """The units of one top-level statement: one per imported name, else the statement itself."""
    if _is_main_guard(node):
        return
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return  # the module's docstring, or a bare string: nothing runs
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        prefix = f"from {'.' * node.level}{node.module or ''} " if isinstance(node, ast.ImportFrom) else ""
        for alias in node.names:
            if alias.name == "*":
                yield _Unit(MODULE_CODE, frozenset(), frozenset(), f"{prefix}import *")
                continue
            bound = alias.asname or alias.name.split(".")[0]
            text = f"{prefix}import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
            yield _Unit(bound, frozenset({bound}), frozenset(), text)
        return
    binds = _bound_names(node)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        label = f"{node.name}()"
    elif binds:
        label = ", ".join(sorted(binds))
    else:
        label = MODULE_CODE
    yield _Unit(label, frozenset(binds), frozenset(_used_names(node)), _text(node, lines))


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":``: does not run when the worker imports the module."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    sides = [test.left, *test.comparators]
    return (
        len(sides) == 2
        and any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
        and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)
    )


def _bound_names(node: ast.stmt) -> set[str]:
    """Module-level names a top-level statement binds (inside if/try/with/for blocks too)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    names: set[str] = set()
    for child in _walk_module_scope(node):
        if isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
            names.add(child.id)
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(child.name)
        elif isinstance(child, (ast.Import, ast.ImportFrom)):
            names |= {a.asname or a.name.split(".")[0] for a in child.names if a.name != "*"}
    return names


def _walk_module_scope(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a statement that run in the module's scope (not inside functions or classes it defines)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            yield child  # it binds its name here; its body is another scope
            continue
        yield from _walk_module_scope(child)


def _used_names(node: ast.stmt) -> set[str]:
    """Every name a statement mentions, at any depth (``global X`` included)."""
    names: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            names.add(child.id)
        elif isinstance(child, (ast.Global, ast.Nonlocal)):
            names |= set(child.names)
    return names


def _text(node: ast.stmt, lines: list[str]) -> str:
    """The statement's source (from its first decorator), comments and blank lines removed."""
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    end = node.end_lineno or node.lineno
    return "\n".join(line for line in lines[first - 1 : end] if line)


def _without_comments(source: str) -> list[str]:
    """The source's lines with comments cut and trailing spaces stripped (blank lines become '')."""
    lines = source.splitlines()
    cuts: dict[int, int] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            cuts[token.start[0]] = token.start[1]
    return [line[: cuts.get(i + 1, len(line))].rstrip() for i, line in enumerate(lines)]
