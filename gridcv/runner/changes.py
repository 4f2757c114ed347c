"""An experiment that changed since its results folder was started: compatible, refused, or adopted.

Finished folds are never mixed with folds computed with other settings: the
store keeps a fingerprint of everything that changes results (see
:meth:`gridcv.config.Experiment.fingerprint`; the builder at the grain of the
code it uses). A changed experiment is refused while the folder holds a done
fold, with a message that says what changed and the choices; with no done
fold nothing would be mixed, so the change is adopted and what the old
settings left (checkpoints, failed folds) is discarded.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gridcv.config import Experiment
from gridcv.config.code_parts import CodeParts
from gridcv.config.experiment import fit_fingerprint
from gridcv.errors import ExperimentChangedError
from gridcv.folders import EXPERIMENT_COPY
from gridcv.monitoring import META_KEY, Monitoring
from gridcv.store import FoldStatus, ResultStore


@dataclass(frozen=True)
class Compatibility:
    """What a folder makes of an experiment it is asked to run.

    Attributes:
        monitoring: What the folder's folds monitor (its record, as it was started, or the experiment's).
        changed: Sections that changed, accepted because no fold is done ([] when nothing changed).
    """

    monitoring: Monitoring
    changed: list[str] = field(default_factory=list)


def check_compatible(store: ResultStore, experiment: Experiment, folder: Path, grouped: bool) -> Compatibility:
    """Whether the folder's results may be mixed with folds of this experiment.

    A folder keeps what its folds monitor (its record, or as it was started
    before records); writing that choice out in the file (``monitor_test_fold:
    true`` in a folder that monitors the test fold) is no change. A folder with
    no done fold accepts a changed experiment (nothing would be mixed);
    :func:`adopt_changes` then discards what the old settings left.

    Args:
        store: The folder's store.
        experiment: The experiment to run in it.
        folder: The results folder (for messages).
        grouped: Whether the splitter uses groups.

    Raises:
        ExperimentChangedError: A section that changes results differs and the folder holds done folds.
    """
    old = store.get_meta("fingerprint")
    monitoring = Monitoring.of_folder(store.get_meta(META_KEY), old is not None, experiment.spec, grouped)
    if old is None:
        return Compatibility(monitoring)
    new = experiment.fingerprint()
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if "model" in changed and old.get("model") == experiment.whole_file_model_digest():
        changed.remove("model")  # a folder that recorded the whole file, which is unchanged
    if "fit" in changed and _monitoring_spelled_out(old["fit"], experiment, monitoring, grouped):
        changed.remove("fit")
    if not changed:
        return Compatibility(monitoring)
    if not any(s is FoldStatus.DONE for s in store.statuses().values()):
        return Compatibility(Monitoring.of(experiment.spec, grouped), changed)  # a fresh start
    if changed == ["model"] and _recorded_builder(store, folder) == experiment.spec.model:
        raise ExperimentChangedError(_builder_changed(store, experiment, folder))
    raise ExperimentChangedError(
        f"{experiment.where}: the experiment changed since {folder} was started: {', '.join(changed)} "
        "differ (only adding grid values is compatible). The finished folds were computed "
        "with the old settings, so they are not mixed with new ones. Pass --restart to move "
        "the old results aside (they are kept) and start again, or --output DIR to write to "
        "another folder."
    )


def _monitoring_spelled_out(old_fit: str, experiment: Experiment, monitoring: Monitoring, grouped: bool) -> bool:
    """Whether ``fit:`` differs only in how it names the samples the folder monitors anyway."""
    if not Monitoring.of(experiment.spec, grouped).same_samples(monitoring):
        return False
    fit = experiment.spec.fit
    spellings = [{}, {"validation_split_from_train": monitoring.fraction}]
    return any(
        fit_fingerprint(fit.model_copy(update={"validation_split_from_train": None, "monitor_test_fold": False, **s}))
        == old_fit
        for s in spellings
    )


def _recorded_builder(store: ResultStore, folder: Path) -> str | None:
    """The ``model:`` reference the folder was started with (older folders: from their copy of the file)."""
    recorded = store.get_meta("builder")
    if recorded is not None:
        return str(recorded)
    try:
        copy = yaml.safe_load((folder / EXPERIMENT_COPY).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return str(copy.get("model")) if isinstance(copy, dict) else None


def _builder_changed(store: ResultStore, experiment: Experiment, folder: Path) -> str:
    """The message for a builder whose code changed: the file, the function, which parts, the choices."""
    code = experiment.builder_code()
    assert code is not None  # without code to hash, the model section changes only with its reference
    file = experiment.model.own_source(experiment.base_dir)
    old = store.get_meta("builder_parts")
    if old is None:
        detail = "this folder was started by a gridcv that hashed the whole file, so an edit anywhere in it counts"
    else:
        detail = "changed: " + "; ".join(_changed_parts(old, code))
    return (
        f"{experiment.where}: the model builder {code.own} in {file} changed since {folder} was started "
        f"({detail}). The finished folds were computed with the old builder, so they are not mixed with new "
        "ones. Undo the edit to resume them, pass --restart to move the old results aside (they are kept) and "
        "start again, or --output DIR to write to another folder."
    )


def _changed_parts(old: dict[str, str], new: CodeParts) -> list[str]:
    """``build() itself``, ``conv_block(), which it uses``, ... for the parts that differ."""
    parts = new.parts
    edited = [label for label in sorted(old.keys() & parts.keys()) if old[label] != parts[label]]
    described = [f"{new.own} itself"] if new.own in edited else []
    described += [f"{label}, which it uses" for label in edited if label != new.own]
    described += [f"{label}, which it now uses" for label in sorted(parts.keys() - old.keys())]
    described += [f"{label}, which it no longer uses" for label in sorted(old.keys() - parts.keys())]
    return described


def adopt_changes(
    store: ResultStore, experiment: Experiment, folder: Path, grouped: bool
) -> tuple[Monitoring, str | None]:
    """Checks the folder under the run lock; for an accepted change, discards what the old settings left.

    With no done fold, a changed experiment is accepted: the checkpoints and
    saved models of unfinished folds (trained with the old settings, they must
    not be resumed under the new ones) are deleted, then the folds that are not
    done and their attempts. Files go first: a run killed in between finds the
    same change again and finishes the job.

    Returns:
        What the folder's folds monitor, and the line for the run's output that says what was
        discarded (None when nothing changed).

    Raises:
        ExperimentChangedError: As :func:`check_compatible`.
    """
    compatibility = check_compatible(store, experiment, folder, grouped)
    changed = compatibility.changed
    if not changed:
        return compatibility.monitoring, None
    checkpoints, models = _remove_unfinished_files(folder)
    discarded = store.discard_unfinished()
    failed = discarded.get(FoldStatus.FAILED, 0)
    started = sum(discarded.values()) - failed
    what = [f"{failed} failed fold(s)"] if failed else []
    what += [f"{started} unfinished fold(s)"] if started else []
    what += [f"the checkpoints of {checkpoints} fold(s)"] if checkpoints else []
    what += [f"{models} saved model(s)"] if models else []
    return compatibility.monitoring, (
        f"the experiment changed since {folder} was started ({', '.join(changed)} differ), but no fold had "
        "finished, so nothing is mixed and every fold runs with the new settings; discarded from the old ones: "
        + (", ".join(what) if what else "nothing (no fold had started)")
        + "."
    )


def _remove_unfinished_files(folder: Path) -> tuple[int, int]:
    """Deletes every fold's checkpoints and saved model (none is done); returns how many of each."""
    checkpoints = [d for d in (folder / "checkpoints").glob("*") if d.is_dir()]
    with_files = sum(1 for d in checkpoints if any(p.is_file() for p in d.rglob("*")))
    for d in checkpoints:
        shutil.rmtree(d)
    models = [m for m in (folder / "models").glob("*.keras") if m.is_file()]
    for m in models:
        m.unlink()
    return with_files, len(models)


def fingerprint_meta(experiment: Experiment) -> dict[str, Any]:
    """What the store records to check later runs against: the fingerprint and the builder's parts."""
    code = experiment.builder_code()
    return {
        "fingerprint": experiment.fingerprint(),
        "builder": experiment.spec.model,
        "builder_parts": None if code is None else code.parts,
    }
