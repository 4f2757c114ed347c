"""``data: kind: python`` through ``gridcv run`` with worker processes: what the parent process does.

The user's module (tests/test_user_pipelines.py's PIPELINES) imports Keras and TensorFlow
beside its labels function. The runner must never import it: the labels function runs in a
short-lived child, the factory and the builder in the worker. Bad input found in either
comes back as the one-paragraph error, exit code 2, no traceback, and nothing written.
Each case runs the CLI's ``main`` in a fresh interpreter that then prints which TensorFlow
and Keras modules it holds. The child that calls the labels function keeps its stderr (TensorFlow's
C++ log lines) out of the runner's: the first tests check that without TensorFlow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import gridcv
from gridcv.errors import DataError
from gridcv.execution.calls import call_in_child
from tests.test_user_pipelines import pipeline_experiment


def loud(x: int) -> int:
    os.write(2, b"a C++ log line\n")
    print("a print", file=sys.stderr)
    return x * 2


def dies() -> None:
    os.write(2, b"last words\n")
    os._exit(3)


def test_the_childs_stderr_goes_to_a_log_deleted_once_it_answered(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert call_in_child(loud, 21) == 42
    assert capfd.readouterr().err == ""
    assert list(tmp_path.iterdir()) == []


def test_a_child_that_dies_before_answering_names_its_log(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(DataError) as err:
        call_in_child(dies)
    (log,) = tmp_path.iterdir()
    assert str(err.value) == (
        f"the process that called dies for the runner died (exit code 3) before it answered; its output is in {log}."
    )
    assert (log.read_text(), capfd.readouterr().err) == ("last words\n", "")


MORE = """

def none_labels():
    return None


def raising_labels():
    raise KeyError("y")
"""
NONE_BUILDER = """
def build(params, input_shape, n_classes):
    return None
"""
PARENT = (
    "import sys\n"
    "from gridcv.cli import main\n"
    "code = main(['run', sys.argv[1], '--quiet'])\n"
    "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n"
    "sys.exit(code)\n"
)


def run_in_parent(path: Path) -> tuple[int, str, str]:
    """``gridcv run path`` in a fresh interpreter: its exit code, stderr, and the TF/Keras modules it imported."""
    out = subprocess.run([sys.executable, "-c", PARENT, str(path)], capture_output=True, text=True, timeout=300)
    return out.returncode, out.stderr.strip(), out.stdout.strip().splitlines()[-1]


def experiment(folder: Path, factory: str = "make_tf_data", labels: str = "labels", builder: str | None = None) -> Path:
    data = {"kind": "python", "factory": f"pipelines.py:{factory}", "labels": f"pipelines.py:{labels}"}
    path = pipeline_experiment(folder, factory, data=data, execution={"isolation": "process"})
    with (folder / "pipelines.py").open("a") as f:
        f.write(MORE)
    if builder is not None:
        (folder / "builder.py").write_text(builder)
    return path


@pytest.mark.slow
def test_a_good_run_never_imports_tensorflow_in_the_parent(tmp_path):
    path = experiment(tmp_path)
    assert run_in_parent(path) == (0, "", "[]")
    assert gridcv.load_folds(path)["status"].tolist() == ["done", "done"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            "lables",
            "key 'data.labels' names lables() in {pipelines}, which defines no such function (it defines HERE, "
            "Samples, X, Y, _log, groups, labels, make_dropping_the_last_batch, make_for_one_argument, "
            "make_generator, make_list, make_py_dataset, make_tf_data, make_without_epoch, none_labels, "
            "raising_labels, short_labels). Did you mean 'labels'? "
            "Fix the name after the colon.",
        ),
        (
            "none_labels",
            "key 'data.labels': pipelines.py:none_labels() returned NoneType (None), not one value per sample. "
            "Return a list or a numpy array with one entry (or row) per sample.",
        ),
        (
            "raising_labels",
            "key 'data.labels': pipelines.py:raising_labels() raised KeyError: 'y'. gridcv calls it with no "
            "arguments; it returns one value per sample.",
        ),
    ],
)
def test_bad_labels_found_in_the_child_are_one_paragraph_and_exit_code_2(tmp_path, labels, message):
    path = experiment(tmp_path, labels=labels)
    text = message.format(pipelines=tmp_path / "pipelines.py")
    assert run_in_parent(path) == (2, f"gridcv: error: {path}: {text}", "[]")
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_factory_or_builder_of_the_wrong_type_found_in_the_worker_is_exit_code_2(tmp_path):
    path = experiment(tmp_path / "factory", factory="make_list")
    assert run_in_parent(path) == (
        2,
        f"gridcv: error: {path}: key 'data.factory': pipelines.py:make_list returned list, which gridcv cannot feed "
        "to Keras. Return a keras.utils.PyDataset (or Sequence), a tf.data.Dataset, or a generator of (x, y) "
        "batches, or one of these with its steps per epoch as (data, steps) (arrays: wrap them as "
        "tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)).",
        "[]",
    )
    assert not (tmp_path / "factory" / "results").exists()
    path = experiment(tmp_path / "builder", builder=NONE_BUILDER)
    assert run_in_parent(path) == (
        2,
        f"gridcv: error: {path}: key 'model': builder.py:build returned NoneType, not a keras.Model. The builder "
        f"must return a model: build(params, input_shape, n_classes).",
        "[]",
    )
    assert not (tmp_path / "builder" / "results").exists()
