"""The experiment file's schema: one pydantic model per section.

The names here are a contract with users' YAML files. pydantic checks types,
defaults and unknown keys; :mod:`gridcv.config.explain` turns its errors into
one paragraph, and :mod:`gridcv.config.checks` adds what a schema cannot say.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    NonNegativeInt,
    PositiveInt,
    PrivateAttr,
    field_validator,
    model_validator,
)

from gridcv.config.data import DataSpec
from gridcv.config.training import CallbackSpec, CheckpointInterval, CompileSpec, checkpoint_interval


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FitSpec(_Section):
    """``fit:``: training defaults; a grid key with the same name overrides them."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    shuffle: bool = True
    callbacks: list[CallbackSpec] = []
    # Share of each training split held out for callbacks to monitor; None: 0.1 when a callback
    # is present (gridcv.monitoring.DEFAULT_FRACTION). The default stays None, not 0.1: the
    # fingerprint leaves out keys at their default, so a file that wrote 0.1 keeps its fingerprint.
    validation_split_from_train: float | None = Field(default=None, gt=0.0, lt=1.0)
    # Callbacks monitor the test fold, as gridcv did before: optimistic scores, with a warning.
    monitor_test_fold: bool = False
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    # Also within an epoch, so a kill loses minutes, not an epoch: batches (500) or a time of
    # training (10min). It changes no result, so the fingerprint leaves it out.
    checkpoint_every: int | str | None = "10min"

    # Whether fit.callbacks was written as a mapping (messages then name 'fit.callbacks.<name>').
    # Private: the fingerprint sees the same callbacks whichever way they are written.
    _callbacks_as_mapping: bool = PrivateAttr(default=False)

    @model_validator(mode="wrap")
    @classmethod
    def _callbacks_mapping_as_list(cls, data: Any, handler: ModelWrapValidatorHandler[FitSpec]) -> FitSpec:
        mapping = isinstance(data, dict) and isinstance(data.get("callbacks"), dict)
        if mapping:  # the values are mappings or null (checked on the raw file, checks.check_callback_mapping)
            written = data["callbacks"].items()
            data = {**data, "callbacks": [{"name": k, **(v if isinstance(v, dict) else {})} for k, v in written]}
        fit = handler(data)
        fit._callbacks_as_mapping = mapping
        return fit

    @field_validator("callbacks", mode="before")
    @classmethod
    def _names_as_mappings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("checkpoint_every", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> Any:
        checkpoint_interval(value)  # raises with the fix
        return value

    def checkpoint_interval(self) -> CheckpointInterval | None:
        """``checkpoint_every`` as batches or seconds; None: at the end of each epoch only."""
        return checkpoint_interval(self.checkpoint_every)

    def callback_key(self, index: int) -> str:
        """How messages name an entry of ``fit.callbacks``: ``fit.callbacks[0]`` or ``fit.callbacks.<name>``."""
        if self._callbacks_as_mapping:
            return f"fit.callbacks.{self.callbacks[index].name}"
        return f"fit.callbacks[{index}]"


class CVSpec(BaseModel):
    """``cv:``: a scikit-learn splitter by name and its keyword arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)
    splitter: str = "StratifiedKFold"

    def kwargs(self) -> dict[str, Any]:
        """The splitter's keyword arguments (every key but ``splitter``)."""
        return dict(self.model_extra or {})


class ExecutionSpec(_Section):
    """``execution:``: how folds are run. Every key is also a command-line option, which wins.

    The command line's options are generated from these fields (name, type,
    choices and description), so the two cannot drift apart.
    """

    isolation: Literal["process", "inline"] = Field(
        default="process", description="train in worker processes, or in this process (debugging)"
    )
    max_worker_memory: ByteSize | None = Field(
        default=None,
        description="replace a worker above this after a fold; stop it above this during one (e.g. 4GiB)",
    )
    # Replacing workers is what keeps memory flat (clear_session + gc.collect do not);
    # benchmarks/memory.py measured the default.
    folds_per_worker: PositiveInt | None = Field(default=20, description="replace a worker after this many folds")
    on_oom: Literal["retry_smaller_batch", "skip", "stop"] = Field(
        default="retry_smaller_batch", description="what an out-of-memory fold does"
    )
    min_batch_size: PositiveInt = Field(default=1, description="smallest batch an out-of-memory retry may use")
    max_retries: NonNegativeInt = Field(default=0, description="retries for failures other than out-of-memory")
    # Several folds at once (gridcv.execution.placement): one worker per GPU, CPU slots, or a Dask cluster.
    devices: Literal["auto", "cpu"] | list[int | str] = Field(
        default="auto",
        description="auto (every visible GPU, else the CPU), cpu, or GPUs as a list: 0,1 or GPU-5c3e...",
        json_schema_extra={"metavar": "DEVICES"},
    )
    workers_per_device: PositiveInt = Field(
        default=1, description="folds trained at once on each GPU (2 or more need gpu_memory_limit)"
    )
    gpu_memory_limit: ByteSize | None = Field(
        default=None, description="a hard TensorFlow memory cap per GPU worker (e.g. 10GiB); default: memory growth"
    )
    slots: PositiveInt = Field(
        default=1, description="CPU only: folds trained at once on the CPU (its cores split between them)"
    )
    backend: Literal["local", "dask"] = Field(
        default="local", description="run folds on this machine, or on a Dask cluster (pip install gridcv[dask])"
    )
    dask_scheduler: str | None = Field(
        default=None,
        description="the Dask scheduler: tcp://host:8786, or a scheduler file (backend: dask)",
        json_schema_extra={"metavar": "ADDRESS"},
    )

    @field_validator("devices", mode="before")
    @classmethod
    def _devices_as_list(cls, value: Any) -> Any:
        """``0`` and ``"0,1"`` (the command line's form) are lists of devices; ``auto`` and ``cpu`` stay words."""
        if isinstance(value, int) and not isinstance(value, bool):
            return [value]
        if isinstance(value, str) and value.strip().lower() not in ("auto", "cpu"):
            entries = [e.strip() for e in value.split(",") if e.strip()]
            return [int(e) if e.isdigit() else e for e in entries]
        if isinstance(value, str):
            return value.strip().lower()
        return value

    @field_validator("devices")
    @classmethod
    def _some_devices(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("an empty list names no device; write auto, cpu or a list such as [0, 1]")
        return value


class ExperimentSpec(_Section):
    """The whole experiment file, validated."""

    name: str
    output: str | None = None
    seed: NonNegativeInt = 0
    deterministic: bool = False
    data: Annotated[DataSpec, Field(discriminator="kind")]
    # None: inferred from the data (gridcv.data.targets); the runner puts the inferred task here.
    task: Literal["classification", "regression", "segmentation", "multilabel"] | None = None
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
