"""References to the user's Python code: ``path/to/file.py:name`` or ``package.module:name``.

The experiment file names code in four places (``model``, ``data.prepare``,
callbacks of the user's own, and more to come); every one is parsed,
resolved, checked and imported here, so ``~`` and relative paths mean the
same thing in the parent's checks as in the worker that imports the code.

Checking (:meth:`Ref.check`) reads the file's syntax tree and never imports
it: importing a builder would import Keras in the parent process.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridcv.errors import ConfigError, UserError, did_you_mean

_REF = re.compile(r"^(?P<module>[^:]+):(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")

# Modules imported from files, by (path, mtime, size): a file edited between two inline
# runs in a notebook is imported again, an unchanged one is not re-executed per fold.
_file_modules: dict[tuple[str, int, int], Any] = {}


@dataclass(frozen=True)
class Ref:
    """A parsed reference, as written in the experiment file.

    Attributes:
        module: ``path/to/file.py`` (relative to the experiment file; ``~`` allowed)
            or a dotted module name.
        name: The function or class in it.
        key: The experiment-file key it came from (``model``, ``data.prepare``...).
        role: What the code is, in messages (``builder``, ``callback``...).
    """

    module: str
    name: str
    key: str
    role: str = "function"

    @classmethod
    def parse(cls, text: str, key: str, where: str, role: str = "function", what: str = "function") -> Ref:
        """Parses ``module:name``; ``what`` is the placeholder in the message (``function``, ``ClassName``).

        Raises:
            ConfigError: The text is not of that form.
        """
        match = _REF.match(text)
        if not match:
            raise ConfigError(
                f"{where}: key '{key}' is {text!r}; write it as 'path/to/file.py:{what}' "
                f"(relative to the experiment file) or 'package.module:{what}'."
            )
        return cls(match["module"], match["name"], key, role)

    @property
    def text(self) -> str:
        """The reference as written."""
        return f"{self.module}:{self.name}"

    @property
    def is_file(self) -> bool:
        """Whether the module is a ``.py`` file rather than an importable module name."""
        return self.module.endswith(".py")

    def path(self, base_dir: Path) -> Path:
        """The file of a file reference: ``~`` expanded, relative to ``base_dir``, resolved."""
        p = Path(self.module).expanduser()
        return (p if p.is_absolute() else base_dir / p).resolve()

    def own_source(self, base_dir: Path) -> Path | None:
        """The source file of the user's own code this reference names, found without importing it.

        A file reference's file; for a module name, its ``.py`` file unless it is
        gridcv's (the built-in builders) or an installed distribution's (in
        ``site-packages``): those change with their package's version, which
        results folders do not track (nor Keras's). A package of the user's
        (``pip install -e``, or on ``PYTHONPATH``) is their code and counts.
        None when there is no such file.
        """
        if self.is_file:
            return self.path(base_dir)
        if self.module.split(".")[0] == "gridcv":
            return None
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        if origin is None or origin.suffix != ".py" or {"site-packages", "dist-packages"} & set(origin.parts):
            return None
        return origin

    def check(self, base_dir: Path, where: str) -> None:
        """Finds the code without importing it (importing a builder would import Keras).

        Raises:
            ConfigError: The file or module does not exist, or the file defines no such name.
        """
        if self.is_file:
            file = self.path(base_dir)
            if not file.is_file():
                raise ConfigError(
                    f"{where}: key '{self.key}' names {self.module}, but {file} does not exist. Give the "
                    f"{self.role}'s file relative to the experiment file, e.g. 'models.py:build'."
                )
            defined = defined_names(file, self.key, where)
            if self.name not in defined:
                raise ConfigError(
                    f"{where}: key '{self.key}' names {self.name}() in {file}, which defines no such function "
                    f"(it defines {', '.join(sorted(defined)) or 'nothing'}).{did_you_mean(self.name, defined)} Fix "
                    "the name after the colon."
                )
            return
        try:
            found = importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ConfigError(
                f"{where}: key '{self.key}' names module {self.module!r}, which is not importable. Install it, "
                "or use 'path/to/file.py:function' relative to the experiment file."
            )

    def load(self, base_dir: Path, where: str, error: type[UserError] = ConfigError) -> Any:
        """Imports the module and returns the named object.

        Args:
            base_dir: The experiment file's folder.
            where: The experiment file, for messages.
            error: The error type the caller raises (a worker raises BuilderError, so
                that the run stops instead of failing every fold).

        Raises:
            UserError: Of type ``error``: the module or the name cannot be found.
        """
        try:
            module = self._import_file(base_dir) if self.is_file else importlib.import_module(self.module)
            return getattr(module, self.name)
        except (ImportError, FileNotFoundError, AttributeError) as exc:
            raise error(
                f"{where}: key '{self.key}' is {self.text!r}, which cannot be imported ({exc}). Write it as "
                "'file.py:function' relative to the experiment file, or 'package.module:function'."
            ) from None

    def _import_file(self, base_dir: Path) -> Any:
        path = self.path(base_dir)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        stat = path.stat()
        cache_key = (str(path), stat.st_mtime_ns, stat.st_size)
        if cache_key not in _file_modules:
            name = f"gridcv_user_{path.stem}_{abs(hash(str(path)))}"
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            _file_modules[cache_key] = module
        return _file_modules[cache_key]


def defined_names(file: Path, key: str, where: str) -> set[str]:
    """Top-level names a Python file defines (functions, classes, assignments, imports), unimported.

    Raises:
        ConfigError: The file has a syntax error.
    """
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
    except SyntaxError as exc:
        raise ConfigError(f"{where}: key '{key}': {file} has a syntax error at line {exc.lineno}: {exc.msg}.") from None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    return names
