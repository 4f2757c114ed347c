"""A results folder: finding it from what the user names, and the names of the files in it.

No pandas, no Keras: ``gridcv status`` and ``gridcv results`` start here.
"""

from __future__ import annotations

from pathlib import Path

from gridcv.store import DB_NAME

BEST_MODEL = "best_model.keras"  # the refit model
BEST_JSON = "best_model.json"  # what the refit model is: candidate, scores, classes, inputs
EXPERIMENT_COPY = "experiment.yaml"  # the experiment the folder was last run with


def results_folder(path: str | Path) -> Path:
    """The results folder for a results folder, its database, or an experiment file."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix in {".yaml", ".yml"} and not (p.parent / DB_NAME).exists():
        from gridcv.config import load_experiment

        return load_experiment(p).output_dir()
    if p.is_file() and p.name == DB_NAME:
        return p.parent
    return p.resolve()
