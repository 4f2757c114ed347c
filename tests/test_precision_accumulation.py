"""Mixed precision per fold (inside the worker) and gradient accumulation as a grid key."""

from __future__ import annotations

import json

import pytest

import gridcv
from tests.conftest import TINY_BUILDER


def test_precision_grid_key_sets_the_policy_for_each_fold(uncompiled_experiment):
    path = uncompiled_experiment(grid={"precision": ["float32", "mixed_bfloat16"]})
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    assert folds["precision"].tolist() == ["float32", "float32", "mixed_bfloat16", "mixed_bfloat16"]
    assert folds["status"].tolist() == ["done"] * 4
    import keras

    assert keras.mixed_precision.dtype_policy().name == "float32"  # reset after the fold


@pytest.mark.slow
def test_mixed_precision_is_active_inside_the_worker_process(uncompiled_experiment):
    path = uncompiled_experiment(
        fit={"epochs": 1, "batch_size": 16, "precision": "mixed_float16"},
        grid={"units": [4]},
        execution={"isolation": "process"},
        refit=True,
    )
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    assert folds["precision"].tolist() == ["mixed_float16", "mixed_float16"]
    assert folds["worker_id"].tolist() == ["w1", "w1"]
    # The refit ran in the worker too, under the same policy.
    summary = json.loads((path.parent / "results" / "tiny" / "best_model.json").read_text())
    assert summary["refit"]["precision"] == "mixed_float16"
    assert gridcv.load_best_model(path).output_shape == (None, 3)


@pytest.mark.parametrize("builder", ["uncompiled", "compiles_itself"])
def test_accumulation_grid_key_and_effective_batch_size(uncompiled_experiment, make_experiment, builder):
    overrides = {"fit": {"epochs": 1, "batch_size": 8}, "grid": {"gradient_accumulation_steps": [1, 3]}}
    path = uncompiled_experiment(**overrides) if builder == "uncompiled" else make_experiment(TINY_BUILDER, **overrides)
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    assert folds["accumulation_steps"].tolist() == [1, 1, 3, 3]
    assert folds["effective_batch_size"].tolist() == [8, 8, 24, 24]


def test_accumulation_from_compile_section(uncompiled_experiment):
    path = uncompiled_experiment(
        fit={"epochs": 1, "batch_size": 4},
        grid={"units": [4]},
        compile={"optimizer": "adamw", "learning_rate": "1e-3", "weight_decay": 0.01, "gradient_accumulation_steps": 2},
    )
    gridcv.run_experiment(path)
    assert gridcv.load_folds(path)["effective_batch_size"].tolist() == [8, 8]


def test_oom_retry_doubles_accumulation_on_top_of_the_requested(make_experiment):
    from gridcv.config import load_experiment
    from gridcv.execution.messages import OutcomeKind
    from gridcv.runner.jobs import requested_accumulation
    from gridcv.runner.policy import retry_shape
    from gridcv.store import AttemptRow

    spec = load_experiment(make_experiment(compile={"gradient_accumulation_steps": 2})).spec
    assert requested_accumulation(spec, {}) == 2
    assert requested_accumulation(spec, {"gradient_accumulation_steps": 3}) == 3
    oom = AttemptRow("t", 1, OutcomeKind.OOM, None, None, 32, 2, None, "w1", 0, 0.0, 1.0)
    shape = retry_shape(32, [oom])
    assert shape.batch * shape.accumulation * requested_accumulation(spec, {}) == 32 * 2  # the effective batch is kept


def test_accumulation_on_a_loss_scaled_optimizer():
    import keras

    from gridcv.training.compiling import accumulation_of, set_gradient_accumulation

    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, dtype="float32")])
        model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy")
        set_gradient_accumulation(model, 4)
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert accumulation_of(model) == 4
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


OOM_UNLESS_ACCUMULATING_4 = '''
import keras


class OutOfMemoryBelow4(keras.callbacks.Callback):
    """Behaves like a device that fits the batch only when gradients accumulate over 4 steps."""

    def on_train_batch_begin(self, batch, logs=None):
        if self.model.optimizer.gradient_accumulation_steps < 4:
            raise MemoryError("pretend the batch does not fit")
'''


def test_oom_retry_keeps_the_effective_batch_of_an_accumulating_candidate(make_experiment):
    from tests.conftest import UNCOMPILED_BUILDER

    path = make_experiment(
        UNCOMPILED_BUILDER + OOM_UNLESS_ACCUMULATING_4,
        fit={"epochs": 1, "batch_size": 16, "callbacks": ["builder.py:OutOfMemoryBelow4"]},
        grid={"gradient_accumulation_steps": [2]},
    )
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done", "done"]
    assert folds["batch_size"].tolist() == [8, 8]
    assert folds["accumulation_steps"].tolist() == [4, 4]
    assert folds["effective_batch_size"].tolist() == [32, 32]
    # One OOM per candidate: its second fold starts at the batch that fit in its first.
    assert gridcv.load_attempts(path)["outcome"].tolist() == ["oom", "done", "done"]
