"""The experiment file: schema, checks, error messages, and the validated :class:`Experiment`.

Parent side: no Keras, no pandas. Validated sections are frozen pydantic
models and cross to workers as they are.
"""

from gridcv.config.data import (
    ArraysData,
    AugmentSpec,
    CsvData,
    DataSpec,
    ImagesData,
    PythonData,
    is_python,
    is_segmentation,
    parse_data,
)
from gridcv.config.experiment import Experiment, experiment_from_dict, load_experiment
from gridcv.config.schema import CVSpec, ExecutionSpec, ExperimentSpec, FitSpec
from gridcv.config.training import CallbackSpec, CompileSpec

__all__ = [
    "ArraysData",
    "AugmentSpec",
    "CVSpec",
    "CallbackSpec",
    "CompileSpec",
    "CsvData",
    "DataSpec",
    "ExecutionSpec",
    "Experiment",
    "ExperimentSpec",
    "FitSpec",
    "ImagesData",
    "PythonData",
    "experiment_from_dict",
    "is_python",
    "is_segmentation",
    "load_experiment",
    "parse_data",
]
