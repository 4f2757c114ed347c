"""Training options in the experiment file: exact messages for wrong names, static lists in step with Keras."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

import gridcv
from gridcv.config import load_experiment
from gridcv.config.training import CALLBACKS, OPTIMIZERS
from gridcv.errors import BuilderError, ConfigError
from tests.conftest import base_config


def _error(tmp_path: Path, **overrides: object) -> str:
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(base_config(**overrides)))
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    return str(info.value).replace(str(path), "e.yaml")


def test_unknown_optimizer_is_named_with_a_suggestion(tmp_path):
    assert _error(tmp_path, compile={"optimizer": "adamm"}) == (
        "e.yaml: key 'compile.optimizer' is 'adamm', which is not a Keras optimizer. Did you mean 'adam'? "
        "Use one of adadelta, adafactor, adagrad, adam, adamax, adamw, ftrl, lamb, lion, nadam, rmsprop, sgd "
        "(case does not matter)."
    )
    assert _error(tmp_path, grid={"optimizer": ["adam", "sgdd"]}).startswith(
        "e.yaml: key 'grid.optimizer' is 'sgdd', which is not a Keras optimizer. Did you mean 'sgd'?"
    )


def test_unknown_callback_and_callback_argument(tmp_path):
    assert _error(tmp_path, fit={"callbacks": ["early_stoping"]}) == (
        "e.yaml: key 'fit.callbacks[0].name' is 'early_stoping', which is not a gridcv callback. Did you mean "
        "'early_stopping'? Use one of early_stopping, reduce_lr_on_plateau, model_checkpoint, tensorboard, or "
        "'module:ClassName' for a callback of your own."
    )
    assert _error(tmp_path, fit={"callbacks": [{"name": "early_stopping", "patiense": 2}]}) == (
        "e.yaml: unknown key 'patiense' in 'fit.callbacks[0]' (did you mean 'patience'?); early_stopping takes "
        "monitor, min_delta, patience, mode, baseline, restore_best_weights, start_from_epoch."
    )
    assert _error(tmp_path, fit={"callbacks": [{"name": "model_checkpoint", "save_models": "all"}]}) == (
        "e.yaml: key 'fit.callbacks[0].save_models' is 'all'; use 'best' (keep each fold's best model) or 'none'."
    )


def test_unknown_scorer(tmp_path):
    assert _error(tmp_path, scoring=["accuracy", "f1_macr"]) == (
        "e.yaml: key 'scoring' names 'f1_macr', which is not a scikit-learn scorer. Did you mean 'f1_macro' or "
        "'f1_micro'? See sklearn.metrics.get_scorer_names() for the full list."
    )


def test_refit_must_name_a_scorer(tmp_path):
    assert _error(tmp_path, scoring=["accuracy", "f1_macro"], refit=True) == (
        "e.yaml: key 'refit' is true but 'scoring' names 2 scorers (accuracy, f1_macro); with several scorers, "
        "set refit to the one that picks the best candidate, e.g. 'refit: accuracy'."
    )
    assert _error(tmp_path, scoring=["accuracy", "f1_macro"], refit="f1_macr") == (
        "e.yaml: key 'refit' is 'f1_macr', which is not one of the scorers in 'scoring' (accuracy, f1_macro). "
        "Did you mean 'f1_macro'? Set refit to one of them, true (one scorer) or false."
    )


def test_grid_keys_for_precision_and_accumulation_are_checked(tmp_path):
    assert _error(tmp_path, grid={"precision": ["float16"]}) == (
        "e.yaml: key 'grid.precision' overrides fit.precision and must hold float32, mixed_float16, "
        "mixed_bfloat16, got ['float16']."
    )
    assert _error(tmp_path, grid={"gradient_accumulation_steps": [0, 2]}) == (
        "e.yaml: key 'grid.gradient_accumulation_steps' overrides compile.gradient_accumulation_steps and must "
        "hold positive integers, got [0, 2]."
    )


def test_new_keys_at_their_defaults_keep_old_fingerprints(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(base_config()))
    before = load_experiment(path).fingerprint()
    path.write_text(
        yaml.safe_dump(base_config(refit=True, fit={"epochs": 2, "batch_size": 16, "precision": "float32"}))
    )
    assert load_experiment(path).fingerprint() == before
    path.write_text(yaml.safe_dump(base_config(fit={"epochs": 2, "batch_size": 16, "callbacks": ["early_stopping"]})))
    assert load_experiment(path).fingerprint()["fit"] != before["fit"]


def test_unknown_loss_and_optimizer_argument_stop_the_run_before_any_fold(uncompiled_experiment):
    path = uncompiled_experiment(compile={"loss": "sparse_categorical_crossentropi"})
    with pytest.raises(BuilderError) as info:
        gridcv.run_experiment(path)
    assert str(info.value) == (
        f"{path}: key 'compile.loss' is 'sparse_categorical_crossentropi', which is not a Keras loss. Did you "
        "mean 'sparse_categorical_crossentropy'? Use a name from keras.losses, e.g. "
        "sparse_categorical_crossentropy for integer labels."
    )
    path = uncompiled_experiment(compile={"optimizer": "adam", "learnig_rate": 0.1})
    with pytest.raises(BuilderError) as info:
        gridcv.run_experiment(path)
    assert str(info.value).startswith(
        f"{path}: unknown key 'compile.learnig_rate' (did you mean 'learning_rate'?); Adam takes learning_rate,"
    )
    assert not (path.parent / "results" / "tiny" / "results.sqlite").exists()


def test_static_name_lists_match_keras():
    import keras

    for name, cls in OPTIMIZERS.items():
        assert issubclass(getattr(keras.optimizers, cls), keras.optimizers.Optimizer), name
    classes = {
        "early_stopping": keras.callbacks.EarlyStopping,
        "reduce_lr_on_plateau": keras.callbacks.ReduceLROnPlateau,
        "tensorboard": keras.callbacks.TensorBoard,
    }
    for name, cls in classes.items():
        assert set(CALLBACKS[name]) <= set(inspect.signature(cls).parameters), name


# --- callbacks written as a mapping, and their arguments as grid keys ----------------------------


def test_a_mapping_of_callbacks_is_the_list_written_otherwise(tmp_path):
    path = tmp_path / "e.yaml"
    as_mapping = {"early_stopping": {"monitor": "val_loss", "patience": 3}, "reduce_lr_on_plateau": None}
    as_list = [{"name": "early_stopping", "monitor": "val_loss", "patience": 3}, {"name": "reduce_lr_on_plateau"}]
    path.write_text(yaml.safe_dump(base_config(fit={"epochs": 2, "callbacks": as_mapping})))
    mapped = load_experiment(path)
    path.write_text(yaml.safe_dump(base_config(fit={"epochs": 2, "callbacks": as_list})))
    listed = load_experiment(path)
    assert mapped.spec.fit.callbacks == listed.spec.fit.callbacks
    assert [c.name for c in mapped.spec.fit.callbacks] == ["early_stopping", "reduce_lr_on_plateau"]
    assert mapped.fingerprint() == listed.fingerprint()  # the same callbacks, however written


def test_a_mapping_of_callbacks_with_an_unknown_name_argument_or_value(tmp_path):
    fit = {"callbacks": {"early_stoping": {"patience": 3}}}
    assert _error(tmp_path, fit=fit) == (
        "e.yaml: key 'fit.callbacks' names 'early_stoping', which is not a gridcv callback. Did you mean "
        "'early_stopping'? Use one of early_stopping, reduce_lr_on_plateau, model_checkpoint, tensorboard, or "
        "'module:ClassName' for a callback of your own."
    )
    assert _error(tmp_path, fit={"callbacks": {"early_stopping": {"monitor": "val_loss", "patiense": 3}}}) == (
        "e.yaml: unknown key 'patiense' in 'fit.callbacks.early_stopping' (did you mean 'patience'?); early_stopping "
        "takes monitor, min_delta, patience, mode, baseline, restore_best_weights, start_from_epoch."
    )
    assert _error(tmp_path, fit={"callbacks": {"early_stopping": 3}}) == (
        "e.yaml: key 'fit.callbacks.early_stopping' is 3; in a mapping of callbacks, each callback maps to its "
        "arguments (early_stopping: {patience: 3}) or to nothing (early_stopping:). Write its arguments as a mapping."
    )
    assert _error(tmp_path, fit={"callbacks": {"early_stopping": {"patience": "3"}}}) == (
        "e.yaml: key 'fit.callbacks.early_stopping.patience' is '3'; use an integer >= 0."
    )
    assert _error(tmp_path, fit={"callbacks": [{"name": "reduce_lr_on_plateau", "factor": 1.5}]}) == (
        "e.yaml: key 'fit.callbacks[0].factor' is 1.5; use a number between 0 and 1."
    )


def test_callback_arguments_as_grid_keys_are_checked(tmp_path):
    fit = {"callbacks": {"early_stopping": {"monitor": "val_loss"}}}
    assert _error(tmp_path, fit=fit, grid={"early_stopping.patiense": [2, 5]}) == (
        "e.yaml: key 'grid.early_stopping.patiense' sets 'patiense' of early_stopping, which takes no such argument "
        "(did you mean 'patience'?); early_stopping takes monitor, min_delta, patience, mode, baseline, "
        "restore_best_weights, start_from_epoch."
    )
    assert _error(tmp_path, fit=fit, grid={"early_stopping.patience": [2, -1]}) == (
        "e.yaml: key 'grid.early_stopping.patience' is -1; use an integer >= 0."
    )
    assert _error(tmp_path, fit=fit, grid={"early_stoping.patience": [2, 5]}) == (
        "e.yaml: key 'grid.early_stoping.patience' looks like an argument of a callback, but fit.callbacks has no "
        "'early_stoping'. Did you mean 'early_stopping'? Grid keys '<callback>.<argument>' set arguments of the "
        "callbacks fit.callbacks lists."
    )
    assert _error(tmp_path, grid={"reduce_lr_on_plateau.factor": [0.5]}) == (
        "e.yaml: key 'grid.reduce_lr_on_plateau.factor' sets the argument factor of reduce_lr_on_plateau, which "
        "fit.callbacks does not list. Add it there (callbacks: {reduce_lr_on_plateau: {}}); the grid key then sets "
        "its factor per candidate."
    )
    # a dotted key that names no callback is a parameter of the builder, as before
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(base_config(grid={"dense.units": [4]})))
    assert load_experiment(path).spec.grid == {"dense.units": [4]}


def test_every_built_in_callback_argument_has_a_type_check():
    from gridcv.config.training import ARGUMENT_TYPES

    assert {a for args in CALLBACKS.values() for a in args} == set(ARGUMENT_TYPES)
