"""The experiment: a validated experiment file, where it lives, and its fingerprint."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from gridcv.config.checks import check_callback_mapping, check_experiment, check_splitter_arguments
from gridcv.config.code_parts import CodeParts, code_parts
from gridcv.config.data import PythonData, is_segmentation
from gridcv.config.explain import explain
from gridcv.config.schema import ExperimentSpec, FitSpec
from gridcv.config.tasks import stratifies
from gridcv.config.training import CompileSpec
from gridcv.errors import ConfigError
from gridcv.refs import Ref


@dataclass(frozen=True)
class Experiment:
    """A validated experiment file and where it lives.

    Attributes:
        path: Absolute path of the experiment file.
        spec: Its validated content.
        text: Its text as read, copied into the results folder.
        named: The file as the user named it (messages show it so).
        base: For an experiment given as a dict (:func:`experiment_from_dict`), the folder its
            relative paths are taken from; its ``path`` is then its copy in the results folder.
    """

    path: Path
    spec: ExperimentSpec
    text: str
    named: str = ""
    base: Path | None = None

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the file are resolved against."""
        return self.base or self.path.parent

    @property
    def rerun(self) -> str:
        """How messages tell the user to run it again."""
        return f"`gridcv run {self.path}`" if self.base is None else "gridcv.run() with the same dict"

    @property
    def where(self) -> str:
        """How messages name the file: as the user named it."""
        return self.named or str(self.path)

    @property
    def model(self) -> Ref:
        """The model builder's reference."""
        return Ref.parse(self.spec.model, "model", self.where, role="builder")

    def resolve(self, relative: str) -> Path:
        """Resolves a path written in the experiment file (``~`` expanded)."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def output_dir(self, override: str | Path | None = None, cwd: Path | None = None) -> Path:
        """The results folder: ``--output``, else ``output:``, else ``results/<name>``.

        Relative output paths are taken from the current directory, like the
        default ``results/<name>``.
        """
        chosen = override or self.spec.output or Path("results") / self.spec.name
        p = Path(chosen).expanduser()
        return p if p.is_absolute() else ((cwd or Path.cwd()) / p).resolve()

    def fingerprint(self) -> dict[str, str]:
        """A hash per section of everything that affects finished results.

        The grid is left out on purpose: new grid values only add fold tasks.
        The model builder's source is hashed too, at the grain of
        :func:`~gridcv.config.code_parts.code_parts`: the builder and what it
        uses in its module, not the rest of the file.
        """
        s = self.spec
        code = self.builder_code()
        parts: dict[str, Any] = {
            "seed": [s.seed, s.deterministic],
            "data": _data_part(s, self.base_dir, self.where),
            "model": [s.model, None if code is None else _digest(code.parts)],
            "fit": _without_new_defaults(s.fit, _FIRST_FIT_KEYS),
            "cv": [s.cv.splitter, sorted(s.cv.kwargs().items())],
            "scoring": s.scorers() + (["train", s.train_score_max_samples] if s.return_train_score else []),
        }
        if s.compile != CompileSpec():
            parts["compile"] = s.compile.model_dump()
        if s.task in ("regression", "multilabel"):
            # Classification and segmentation were the only tasks before the task was recorded:
            # leaving them out keeps those folders' fingerprints (declared or inferred alike).
            parts["task"] = s.task
        return {k: _digest(v) for k, v in parts.items()}

    def builder_code(self) -> CodeParts | None:
        """The parts of the builder's module that the fingerprint covers, each hashed.

        None for a built-in builder (``gridcv.models:...``) or one from an installed
        package: see :meth:`~gridcv.refs.Ref.own_source`.

        Raises:
            ConfigError: The builder's file has a syntax error.
        """
        file = self.model.own_source(self.base_dir)
        if file is None or not file.is_file():
            return None
        try:
            return code_parts(file.read_text(encoding="utf-8"), self.model.name)
        except SyntaxError as exc:
            raise ConfigError(
                f"{self.where}: key 'model': {file} has a syntax error at line {exc.lineno}: {exc.msg}."
            ) from None

    def whole_file_model_digest(self) -> str:
        """The ``model`` fingerprint in its first form: the builder's whole file hashed.

        Results folders started before the builder was hashed at a finer grain
        stored this; it still matches while the file is unchanged.
        """
        return _digest([self.spec.model, _file_digest(self.model, self.base_dir)])


def _data_part(spec: ExperimentSpec, base_dir: Path, where: str) -> dict[str, Any]:
    """The ``data`` section as the fingerprint sees it.

    Segmentation with a stratified splitter stratified by nothing (every image had label 0)
    before images had labels; now it stratifies by each image's label, so such a folder's
    splits change: the marker makes that a change the folder refuses while it holds done folds.
    With ``kind: python`` the pipeline is code: its factory, labels and groups functions are
    hashed as the builder is (the function and what it uses in its module).
    """
    # The cache holds exactly what decoding gives: with or without it, results are the same.
    data = spec.data.model_dump(exclude={"prepare", "cache", "cache_dir"})
    if is_segmentation(spec.data) and stratifies(spec):
        data["stratified_by"] = "image labels"
    if isinstance(spec.data, PythonData):
        refs = {k: getattr(spec.data, k) for k in ("factory", "labels", "groups")}
        data["code"] = {k: _code_digest(text, k, base_dir, where) for k, text in refs.items() if text}
    return data


def _code_digest(text: str, key: str, base_dir: Path, where: str) -> str | None:
    """The digest of a function's parts in its own source file (None for a .npy file or installed code)."""
    if text.endswith(".npy"):
        return None
    ref = Ref.parse(text, f"data.{key}", where)
    file = ref.own_source(base_dir)
    if file is None or not file.is_file():
        return None
    try:
        return _digest(code_parts(file.read_text(encoding="utf-8"), ref.name).parts)
    except SyntaxError as exc:
        raise ConfigError(
            f"{where}: key 'data.{key}': {file} has a syntax error at line {exc.lineno}: {exc.msg}."
        ) from None


# fit: keys of the first release; later keys (validation_split_from_train, monitor_test_fold, ...)
# count only when set, so a folder started before they existed keeps its fingerprint.
_FIRST_FIT_KEYS = ("epochs", "batch_size", "shuffle")
# Keys that change how a fold runs, not its results (a resume is bit-for-bit the same).
_NOT_RESULTS = {"checkpoint_every"}


def fit_fingerprint(fit: FitSpec) -> str:
    """The ``fit`` entry of :meth:`Experiment.fingerprint` for a ``fit:`` section."""
    return _digest(_without_new_defaults(fit, _FIRST_FIT_KEYS))


def _without_new_defaults(section: BaseModel, original: tuple[str, ...]) -> dict[str, Any]:
    """The section's values, leaving out keys added later while they keep their defaults.

    Results folders started before a key existed keep the same fingerprint.
    """
    dumped = section.model_dump(include=set(original))
    dumped.update(section.model_dump(exclude=set(original) | _NOT_RESULTS, exclude_defaults=True))
    return dumped


def _digest(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _file_digest(ref: Ref, base_dir: Path) -> str | None:
    if not ref.is_file:
        return None
    path = ref.path(base_dir)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None


def load_experiment(path: str | Path) -> Experiment:
    """Reads and validates an experiment file.

    Args:
        path: The YAML file.

    Returns:
        The validated :class:`Experiment`.

    Raises:
        ConfigError: The file is missing, is not YAML, or breaks the schema.
    """
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ConfigError(
            f"{path}: no such experiment file. Check the path; experiment files are YAML "
            "files such as experiments/digits.yaml."
        )
    text = file.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigError(
            f"{path}: not valid YAML{line} ({getattr(exc, 'problem', exc)}). "
            "Fix the syntax (indentation and 'key: value' pairs)."
        ) from None
    return Experiment(path=file, spec=_validate(raw, path), text=text, named=str(path))


def _validate(raw: Any, path: str | Path) -> ExperimentSpec:
    """The experiment's content validated; ``path`` names it in messages."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys (name, data, model, grid, ...) at the top level, "
            f"got {type(raw).__name__}. See experiments/digits.yaml for the layout."
        )
    if isinstance(raw.get("cv"), dict):
        check_splitter_arguments(path, raw["cv"])
    check_callback_mapping(path, raw.get("fit"))
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(explain(path, exc, raw)) from None
    check_experiment(path, spec)
    return spec


DICT_NAME = "the experiment dict"  # how messages name an experiment given as a dict


def experiment_from_dict(
    config: Mapping[str, Any], base_dir: str | Path | None = None, output: str | Path | None = None
) -> Experiment:
    """An experiment given as a dict with the experiment file's structure (what loading its YAML gives).

    It is validated exactly as a file is. Its text, copied into the results
    folder as ``experiment.yaml``, is the dict written as YAML.

    Args:
        config: The experiment.
        base_dir: The folder its relative paths (data, model builder) are taken from;
            default: the current directory.
        output: The results folder, overriding ``output:`` (its copy is written there).

    Raises:
        ConfigError: The dict breaks the schema or holds values YAML cannot write.
    """
    from gridcv.folders import EXPERIMENT_COPY

    base = Path(base_dir).expanduser().resolve() if base_dir is not None else Path.cwd()
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"{DICT_NAME}: expected a mapping of keys (name, data, model, grid, ...), got {type(config).__name__}."
        )
    try:
        body = yaml.safe_dump(dict(config), sort_keys=False)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{DICT_NAME}: holds a value YAML cannot write ({exc}). Use str, int, float, bool, None, lists "
            "and dicts: str(path) for a Path, int(n) or float(x) for numpy numbers."
        ) from None
    text = f"# Written by gridcv.run() from a dict; relative paths in it are relative to {base}\n{body}"
    experiment = Experiment(base / EXPERIMENT_COPY, _validate(yaml.safe_load(body), DICT_NAME), text, DICT_NAME, base)
    return replace(experiment, path=experiment.output_dir(output) / EXPERIMENT_COPY)
