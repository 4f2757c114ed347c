"""Checks made before a run writes anything, so bad input never touches existing results."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gridcv.config import ExecutionSpec, Experiment
from gridcv.config.code_parts import CodeParts
from gridcv.errors import ConfigError, ExperimentChangedError
from gridcv.store import FoldStatus, ResultStore, RunLock
from gridcv.store.database import holds_results

EXPERIMENT_COPY = "experiment.yaml"  # the experiment file as the run read it, in the results folder


def execution_spec(experiment: Experiment, overrides: dict[str, Any]) -> ExecutionSpec:
    """The ``execution:`` section with command-line values applied (command line wins)."""
    merged = {**experiment.spec.execution.model_dump(exclude_none=True), **overrides}
    try:
        return ExecutionSpec.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"{experiment.where}: execution.{key} (from the file or the command line) is {err['input']!r}: "
            f"{err['msg']}. Fix the value, e.g. --max-worker-memory 4GiB."
        ) from None


def check_folder(folder: Path, experiment: Experiment, restart: bool) -> None:
    """Refuses early, without writing, if the folder is busy or holds other results."""
    RunLock(folder).refuse_if_held()
    if holds_results(folder) and not restart:
        # No run holds the folder: read it without creating SQLite's side files, so a
        # refused run leaves the folder exactly as it was (the check is redone under the lock).
        with ResultStore.open(folder, untouched=True) as store:
            check_compatible(store, experiment, folder)


def check_compatible(store: ResultStore, experiment: Experiment, folder: Path) -> list[str]:
    """Whether the folder's results may be mixed with folds of this experiment.

    A folder with no done fold accepts a changed experiment (nothing would be
    mixed); :func:`adopt_changes` then discards what the old settings left.

    Returns:
        The sections that changed (``model``, ``fit``...) when the folder has no
        done fold; [] when nothing that changes results changed.

    Raises:
        ExperimentChangedError: A section that changes results differs and the folder holds done folds.
    """
    old = store.get_meta("fingerprint")
    if old is None:
        return []
    new = experiment.fingerprint()
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if "model" in changed and old.get("model") == experiment.whole_file_model_digest():
        changed.remove("model")  # a folder that recorded the whole file, which is unchanged
    if not changed or not any(s is FoldStatus.DONE for s in store.statuses().values()):
        return changed
    if changed == ["model"] and _recorded_builder(store, folder) == experiment.spec.model:
        raise ExperimentChangedError(_builder_changed(store, experiment, folder))
    raise ExperimentChangedError(
        f"{experiment.where}: the experiment changed since {folder} was started: {', '.join(changed)} "
        "differ (only adding grid values is compatible). The finished folds were computed "
        "with the old settings, so they are not mixed with new ones. Pass --restart to move "
        "the old results aside (they are kept) and start again, or --output DIR to write to "
        "another folder."
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


def adopt_changes(store: ResultStore, experiment: Experiment, folder: Path) -> str | None:
    """Checks the folder under the run lock; for an accepted change, discards what the old settings left.

    With no done fold, a changed experiment is accepted: the checkpoints and
    saved models of unfinished folds (trained with the old settings, they must
    not be resumed under the new ones) are deleted, then the folds that are not
    done and their attempts. Files go first: a run killed in between finds the
    same change again and finishes the job.

    Returns:
        The line for the run's output that says what was discarded, or None when nothing changed.

    Raises:
        ExperimentChangedError: As :func:`check_compatible`.
    """
    changed = check_compatible(store, experiment, folder)
    if not changed:
        return None
    checkpoints, models = _remove_unfinished_files(folder)
    discarded = store.discard_unfinished()
    failed = discarded.get(FoldStatus.FAILED, 0)
    started = sum(discarded.values()) - failed
    what = [f"{failed} failed fold(s)"] if failed else []
    what += [f"{started} unfinished fold(s)"] if started else []
    what += [f"the checkpoints of {checkpoints} fold(s)"] if checkpoints else []
    what += [f"{models} saved model(s)"] if models else []
    return (
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


def move_aside(folder: Path) -> Path | None:
    """Renames a results folder to ``<name>.old-<time>`` (``--restart``); returns the new name."""
    if not folder.exists():
        return None
    RunLock(folder).refuse_if_held()
    aside = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.rename(aside)
    return aside
