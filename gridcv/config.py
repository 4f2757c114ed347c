"""The experiment file: its schema, its validation and its fingerprint.

The names here are a contract with users' YAML files. Validation is done by
pydantic (types, defaults, unknown keys) and by a few checks against
scikit-learn (splitter, scorers); every failure becomes a :class:`ConfigError`
whose one-paragraph message names the file, the key and the fix.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
)

from gridcv.config_training import (
    PRECISIONS,
    CallbackSpec,
    CompileSpec,
    check_callbacks,
    check_optimizer,
    check_refit,
)
from gridcv.data.spec import (
    SEGMENTATION_SCORERS,
    ArraysData,
    AugmentSpec,
    CsvData,
    DataSection,
    DataSpec,
    ImagesData,
    is_segmentation,
)
from gridcv.errors import ConfigError

__all__ = ["ArraysData", "AugmentSpec", "CsvData", "ExperimentSpec", "ImagesData", "load_experiment"]

_MODEL_REF = re.compile(r"^(?P<module>[^:]+):(?P<function>[A-Za-z_][A-Za-z0-9_]*)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FitSpec(_Section):
    """``fit:``: training defaults; a grid key with the same name overrides them."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    shuffle: bool = True
    callbacks: list[CallbackSpec] = []
    validation_split_from_train: float | None = Field(default=None, gt=0.0, lt=1.0)
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"

    @field_validator("callbacks", mode="before")
    @classmethod
    def _names_as_mappings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value


class CVSpec(BaseModel):
    """``cv:``: a scikit-learn splitter by name and its keyword arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)
    splitter: str = "StratifiedKFold"

    def kwargs(self) -> dict[str, Any]:
        """The splitter's keyword arguments (every key but ``splitter``)."""
        return dict(self.model_extra or {})


class ExecutionSpec(_Section):
    """``execution:``: how folds are run (worker processes, memory limits, OOM policy)."""

    isolation: Literal["process", "inline"] = "process"
    max_worker_memory: ByteSize | None = None
    # Replacing workers is what keeps memory flat (clear_session + gc.collect do not);
    # benchmarks/memory.py measured the default.
    folds_per_worker: PositiveInt | None = 20
    on_oom: Literal["retry_smaller_batch", "skip", "stop"] = "retry_smaller_batch"
    min_batch_size: PositiveInt = 1
    max_retries: NonNegativeInt = 0


class ExperimentSpec(_Section):
    """The whole experiment file, validated."""

    name: str
    output: str | None = None
    seed: NonNegativeInt = 0
    deterministic: bool = False
    data: DataSpec
    model: str
    fit: FitSpec = FitSpec()
    grid: dict[str, list[Any]] | list[dict[str, list[Any]]]
    cv: CVSpec = CVSpec()
    scoring: str | list[str] = "accuracy"
    return_train_score: bool = False
    train_score_max_samples: PositiveInt = 1000
    refit: bool | str = False
    compile: CompileSpec = CompileSpec()
    execution: ExecutionSpec = ExecutionSpec()

    def refit_scorer(self) -> str | None:
        """The scorer that picks the candidate to refit, or None without refit."""
        if self.refit is False:
            return None
        return self.scorers()[0] if self.refit is True else self.refit

    def scorers(self) -> list[str]:
        """Scorer names in order; the first one ranks candidates."""
        return [self.scoring] if isinstance(self.scoring, str) else list(self.scoring)

    def grid_dicts(self) -> list[dict[str, list[Any]]]:
        """The grid as a list of dicts (scikit-learn ``ParameterGrid`` input)."""
        return [self.grid] if isinstance(self.grid, dict) else list(self.grid)


@dataclass(frozen=True)
class Experiment:
    """A validated experiment file and where it lives.

    Attributes:
        path: Absolute path of the experiment file.
        spec: Its validated content.
        text: Its text as read, copied into the results folder.
    """

    path: Path
    spec: ExperimentSpec
    text: str

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the file are resolved against."""
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        """Resolves a path written in the experiment file."""
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
        The model builder's source file is hashed too, when it is a file.
        """
        s = self.spec
        parts: dict[str, Any] = {
            "seed": [s.seed, s.deterministic],
            "data": s.data.model_dump(exclude={"prepare"}),
            "model": [s.model, _file_digest(self, s.model)],
            "fit": _without_new_defaults(s.fit, ("epochs", "batch_size", "shuffle")),
            "cv": [s.cv.splitter, sorted(s.cv.kwargs().items())],
            "scoring": s.scorers() + (["train", s.train_score_max_samples] if s.return_train_score else []),
        }
        if s.compile != CompileSpec():
            parts["compile"] = s.compile.model_dump()
        return {k: _digest(v) for k, v in parts.items()}


def _without_new_defaults(section: BaseModel, original: tuple[str, ...]) -> dict[str, Any]:
    """The section's values, leaving out keys added later while they keep their defaults.

    Results folders started before a key existed keep the same fingerprint.
    """
    dumped = section.model_dump(include=set(original))
    dumped.update(section.model_dump(exclude=set(original), exclude_defaults=True))
    return dumped


def _digest(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _file_digest(experiment: Experiment, model_ref: str) -> str | None:
    module = model_ref.split(":", 1)[0]
    if not module.endswith(".py"):
        return None
    path = experiment.resolve(module)
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
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys (name, data, model, grid, ...) at the top level, "
            f"got {type(raw).__name__}. See experiments/digits.yaml for the layout."
        )
    if isinstance(raw.get("cv"), dict):
        _check_unknown_splitter_kwargs(path, raw["cv"])
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(path, exc)) from None
    experiment = Experiment(path=file, spec=spec, text=text)
    _check_semantics(path, experiment)
    return experiment


# --- turning pydantic's errors into one paragraph --------------------------------------


def _explain(path: str | Path, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc, model = _walk(tuple(err["loc"]))
        key = ".".join(loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            problems.append(_unknown_key(loc[-1], ".".join(loc[:-1]), _known_keys(tuple(err["loc"])[:-1])))
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


def _unknown_key(key: str, section: str, known: list[str]) -> str:
    where = f"in '{section}'" if section else "at the top level"
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key '{key}' {where}{hint}; valid keys there are {', '.join(known)}"


# --- checks pydantic cannot express -----------------------------------------------------


def _check_semantics(path: str | Path, experiment: Experiment) -> None:
    spec = experiment.spec
    if not _NAME.match(spec.name):
        raise ConfigError(
            f"{path}: key 'name' is {spec.name!r}; it names the results folder, so use letters, "
            "digits, '.', '_' and '-' only (for example 'digits-cnn')."
        )
    if not _MODEL_REF.match(spec.model):
        raise ConfigError(
            f"{path}: key 'model' is {spec.model!r}; write it as 'path/to/file.py:function' "
            "(relative to the experiment file) or 'package.module:function'."
        )
    _check_grid(path, spec)
    _check_splitter(path, spec.cv)
    _check_scorers(path, spec.scorers(), segmentation=is_segmentation(spec.data))
    _check_segmentation(path, spec)
    check_refit(path, spec.refit, spec.scorers())
    check_optimizer(path, "compile.optimizer", spec.compile.optimizer)
    check_callbacks(path, spec.fit.callbacks)


def _check_grid(path: str | Path, spec: ExperimentSpec) -> None:
    grids = spec.grid_dicts()
    if not grids:
        raise ConfigError(f"{path}: key 'grid' is an empty list; give at least one dict of lists.")
    for i, grid in enumerate(grids):
        where = "grid" if isinstance(spec.grid, dict) else f"grid[{i}]"
        for key, values in grid.items():
            if not values:
                raise ConfigError(
                    f"{path}: key '{where}.{key}' is an empty list; give at least one value or remove the key."
                )
            try:
                json.dumps(values)
            except TypeError:
                raise ConfigError(
                    f"{path}: key '{where}.{key}' holds values that are not plain numbers, "
                    "strings, booleans, null or lists of those; use plain YAML values."
                ) from None
            _check_data_grid_key(path, f"{where}.{key}", key, values)
            for reserved in ("epochs", "batch_size", "gradient_accumulation_steps"):
                if key == reserved and not all(isinstance(v, int) and v > 0 for v in values):
                    owner = "compile" if reserved == "gradient_accumulation_steps" else "fit"
                    raise ConfigError(
                        f"{path}: key '{where}.{key}' overrides {owner}.{key} and must hold positive "
                        f"integers, got {values!r}."
                    )
            if key == "precision" and not all(v in PRECISIONS for v in values):
                raise ConfigError(
                    f"{path}: key '{where}.precision' overrides fit.precision and must hold "
                    f"{', '.join(PRECISIONS)}, got {values!r}."
                )
            if key == "optimizer":
                for value in values:
                    check_optimizer(path, f"{where}.optimizer", value)


def _check_data_grid_key(path: str | Path, where: str, key: str, values: list[Any]) -> None:
    """Grid keys ``augment`` and ``balance`` override ``data.augment`` and ``data.balance``."""
    if key == "balance":
        allowed = get_args(DataSection.model_fields["balance"].annotation)
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ConfigError(
                f"{path}: key '{where}' overrides data.balance and must hold values from "
                f"{', '.join(repr(a) for a in allowed)}, got {bad[0]!r}."
            )
    if key == "augment":
        for value in values:
            if isinstance(value, bool):
                continue
            try:
                AugmentSpec.model_validate(value)
            except ValidationError as exc:
                raise ConfigError(
                    f"{path}: key '{where}' overrides data.augment and must hold true (data.augment as "
                    "declared), false (no augmentation) or a mapping of augment keys "
                    f"({', '.join(AugmentSpec.model_fields)}); {value!r} is none of those "
                    f"({exc.errors()[0]['msg']})."
                ) from None


def _check_segmentation(path: str | Path, spec: ExperimentSpec) -> None:
    data = spec.data
    if not is_segmentation(data):
        return
    mask_key = "data.masks" if isinstance(data, ImagesData) else "data.mask_column"
    if getattr(data, "n_classes", None) is None:
        raise ConfigError(
            f"{path}: key 'data.n_classes' is missing; with {mask_key} set, the data is a segmentation "
            "task and masks hold class ids 0 .. n_classes-1, so give their number (e.g. n_classes: 3)."
        )
    balances = {data.balance, *(v for g in spec.grid_dicts() for v in g.get("balance", []))}
    if balances - {"none"}:
        raise ConfigError(
            f"{path}: key 'data.balance' (or grid key 'balance') asks for class balancing, which "
            f"works on one class per sample; with {mask_key} set, labels are per-pixel masks. "
            "Use balance: none (or weight classes in the model's loss)."
        )


def _splitter_class(name: str) -> type | None:
    import sklearn.model_selection as ms

    cls = getattr(ms, name, None)
    return cls if inspect.isclass(cls) and hasattr(cls, "split") and hasattr(cls, "get_n_splits") else None


def _splitter_names() -> list[str]:
    import sklearn.model_selection as ms

    return sorted(n for n in dir(ms) if n[0].isupper() and _splitter_class(n) and "Base" not in n)


def _check_unknown_splitter_kwargs(path: str | Path, cv: dict[str, Any]) -> None:
    name = cv.get("splitter", "StratifiedKFold")
    cls = _splitter_class(str(name))
    if cls is None:
        close = difflib.get_close_matches(str(name), _splitter_names(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"{path}: key 'cv.splitter' is {name!r}, which is not a scikit-learn splitter.{hint} "
            f"Use one of {', '.join(_splitter_names())}."
        )
    accepted = [p for p in inspect.signature(cls).parameters if p not in {"self"}]
    for key in cv:
        if key != "splitter" and key not in accepted:
            raise ConfigError(
                f"{path}: {_unknown_key(key, 'cv', ['splitter', *accepted])} "
                f"({name} takes {', '.join(accepted) or 'no arguments'})."
            )


def _check_splitter(path: str | Path, cv: CVSpec) -> None:
    cls = _splitter_class(cv.splitter)
    assert cls is not None  # checked before validation
    try:
        cls(**cv.kwargs())
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: key 'cv' does not make a valid {cv.splitter}: {exc}.") from None


def _check_scorers(path: str | Path, names: list[str], segmentation: bool = False) -> None:
    from sklearn.metrics import get_scorer_names

    known = list(SEGMENTATION_SCORERS) if segmentation else get_scorer_names()
    if not names:
        raise ConfigError(f"{path}: key 'scoring' is an empty list; name at least one scorer.")
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: key 'scoring' names a scorer twice ({names}); list each once.")
    for name in names:
        if segmentation and name not in known:
            raise ConfigError(
                f"{path}: key 'scoring' names {name!r}, but the data is a segmentation task (per-pixel "
                f"masks), which is scored with {' or '.join(repr(k) for k in known)}. "
                "Set scoring to one or both of them."
            )
        if name in SEGMENTATION_SCORERS and not segmentation:
            raise ConfigError(
                f"{path}: key 'scoring' names {name!r}, which scores per-pixel masks, but the data has "
                "one class per sample. Set data.masks (or data.mask_column) for segmentation, or use "
                "a classification scorer such as 'accuracy'."
            )
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"{path}: key 'scoring' names {name!r}, which is not a scikit-learn scorer.{hint} "
                "See sklearn.metrics.get_scorer_names() for the full list."
            )
