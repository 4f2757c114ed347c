"""What of a builder's module the fingerprint covers: the builder and what it uses, found with ast."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gridcv.config.code_parts import code_parts
from gridcv.refs import Ref

MODELS = '''
"""Builders of two experiments, sharing a file."""
from __future__ import annotations

import keras
from keras import layers as L
import numpy as np

WIDTH = 8
SEGMENTATION_WIDTH = 4


def registered(cls):
    return cls


def block(x, units=WIDTH):
    return L.Dense(units)(x)


@registered
class Scale(L.Layer):
    def call(self, x):
        return x * factor()


def factor():
    return 2.0


def build(params, input_shape, n_classes, head=L.Softmax):
    x = keras.Input(shape=input_shape)
    return keras.Model(x, head()(Scale()(block(x))))


def build_segmentation(params, input_shape, n_classes):
    return np.zeros(SEGMENTATION_WIDTH)


if __name__ == "__main__":
    print(build({}, (4,), 3))
'''


def parts(source: str, name: str = "build") -> dict[str, str]:
    return code_parts(textwrap.dedent(source), name).parts


def test_the_builder_its_helpers_constants_classes_decorators_and_imports():
    found = code_parts(MODELS, "build")
    assert found.own == "build()"
    assert sorted(found.parts) == ["L", "Scale", "WIDTH", "block()", "build()", "factor()", "keras", "registered()"]
    assert sorted(parts(MODELS, "build_segmentation")) == ["SEGMENTATION_WIDTH", "build_segmentation()", "np"]


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        ("return L.Dense(units)(x)", "return L.Dense(units, use_bias=False)(x)", ["block()"]),
        ("WIDTH = 8\n", "WIDTH = 9\n", ["WIDTH"]),  # a default argument's value
        ("return 2.0", "return 3.0", ["factor()"]),  # called by a method of a class the builder uses
        ("def registered(cls):\n    return cls", "def registered(cls):\n    return None", ["registered()"]),
        ("head=L.Softmax", "head=L.ReLU", ["build()"]),
        ("from keras import layers as L", "from tf_keras import layers as L", ["L"]),
    ],
)
def test_an_edit_changes_exactly_the_part_it_touches(old, new, changed):
    assert old in MODELS
    before, after = parts(MODELS), parts(MODELS.replace(old, new))
    assert sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)) == changed


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("return np.zeros(SEGMENTATION_WIDTH)", "return np.ones(SEGMENTATION_WIDTH)"),  # another builder
        ("SEGMENTATION_WIDTH = 4", "SEGMENTATION_WIDTH = 5"),
        ("import numpy as np", "import numpy as np  # only the other builder uses it"),
        ("    print(build({}, (4,), 3))", "    print('main guard: does not run on import')"),
        ("def factor():\n", "def factor():\n    # a comment, and a blank line\n\n"),
        ('"""Builders of two experiments, sharing a file."""', '"""A new docstring."""'),
        ("return 2.0", "return 2.0   "),  # trailing spaces
    ],
)
def test_what_the_builder_does_not_use_is_not_a_change(old, new):
    assert old in MODELS
    assert parts(MODELS.replace(old, new)) == parts(MODELS)


def test_module_level_code_counts_and_what_it_uses_too():
    source = """
        import os
        import keras
        os.environ["TF_DETERMINISTIC_OPS"] = "1"

        def build(params, input_shape, n_classes):
            return keras.Sequential()
    """
    assert sorted(parts(source)) == ["build()", "keras", "module-level code", "os"]
    assert parts(source.replace('"1"', '"0"'))["module-level code"] != parts(source)["module-level code"]


def test_names_bound_in_blocks_and_redefinitions_are_all_kept():
    source = """
        try:
            import keras
        except ImportError:
            keras = None
        SIZE = 2
        SIZE = SIZE * 2

        def build(params, input_shape, n_classes):
            return keras.Sequential([keras.layers.Dense(SIZE)])
    """
    found = parts(source)
    assert sorted(found) == ["SIZE", "build()", "keras"]
    assert parts(source.replace("SIZE * 2", "SIZE * 3"))["SIZE"] != found["SIZE"]
    assert parts(source.replace("keras = None", "keras = False"))["keras"] != found["keras"]


def test_a_builder_no_statement_binds_makes_the_whole_file_one_part():
    source = "from keras_models import *\n"
    assert list(parts(source)) == ["build"]
    assert parts(source + "# a comment\n") == parts(source)
    assert parts(source + "X = 1\n") != parts(source)


def test_a_file_reference_is_the_users_code(tmp_path):
    assert Ref.parse("models.py:build", "model", "e.yaml").own_source(tmp_path) == tmp_path / "models.py"


def test_builders_of_gridcv_and_of_installed_packages_are_known_by_name():
    """Their code changes with their package's version, which results folders do not track (nor Keras's)."""
    assert Ref.parse("gridcv.models:small_cnn", "model", "e.yaml").own_source(Path(".")) is None
    assert Ref.parse("sklearn.datasets:load_digits", "model", "e.yaml").own_source(Path(".")) is None


def test_a_package_of_the_users_is_their_code(tmp_path, monkeypatch):
    (tmp_path / "mymodels").mkdir()
    (tmp_path / "mymodels" / "__init__.py").write_text("")
    (tmp_path / "mymodels" / "cnn.py").write_text("def build(params, input_shape, n_classes):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ref = Ref.parse("mymodels.cnn:build", "model", "e.yaml")
    assert ref.own_source(Path(".")) == tmp_path / "mymodels" / "cnn.py"
