"""What a fold's callbacks monitor, decided once per results folder. Pure: no I/O, no Keras.

Callbacks (early stopping with ``restore_best_weights``, ReduceLROnPlateau, the
best-model checkpoint) choose among epochs by the samples they monitor, so those
must not be the samples the fold is then scored on. By default a fold that hands
``fit`` validation data (any callback present) monitors a part of its own
training split: ``fit.validation_split_from_train`` of it, 0.1 unless set (what
scikit-learn's early-stopping estimators hold out: MLPClassifier, SGDClassifier,
HistGradientBoosting), stratified by label and kept apart by group when the
splitter uses groups. ``fit.monitor_test_fold: true`` keeps the old behaviour,
monitoring the test fold, with a warning in the run's output and in the results.

A results folder keeps the behaviour it started with: :class:`Monitoring` is
recorded in its store's metadata (key ``monitoring``) at its first run. A folder
with a fingerprint but no such record was started by a gridcv that monitored the
test fold unless ``validation_split_from_train`` was set, and resumes so.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridcv.config.schema import ExperimentSpec

META_KEY = "monitoring"  # the store's metadata key of a folder's record
DEFAULT_FRACTION = 0.1  # fit.validation_split_from_train when it is not set


class Monitored(enum.StrEnum):
    """The samples a fold's callbacks monitor."""

    NOTHING = "nothing"  # no callback and no validation_split_from_train: fit gets no validation data
    TRAIN_SPLIT = "train_split"  # a part held out of the fold's training split (the default)
    TEST_FOLD = "test_fold"  # the fold's test split (fit.monitor_test_fold, or a folder started before)


@dataclass(frozen=True)
class Monitoring:
    """What every fold (and the refit) of a results folder monitors.

    Attributes:
        monitored: Which samples callbacks monitor.
        fraction: Share of the training split held out (``TRAIN_SPLIT`` only).
        by_group: Keep groups apart between the trained and the monitored part
            (``TRAIN_SPLIT`` with a splitter that uses groups).
        started_before: The folder was started before folders recorded this;
            the value was worked out from the experiment as that gridcv did.
    """

    monitored: Monitored
    fraction: float | None = None
    by_group: bool = False
    started_before: bool = False

    @classmethod
    def of(cls, spec: ExperimentSpec, grouped: bool) -> Monitoring:
        """What an experiment asks for, in a new results folder.

        Args:
            spec: The experiment.
            grouped: Whether its splitter uses groups.
        """
        fit = spec.fit
        if fit.monitor_test_fold:
            return cls(Monitored.TEST_FOLD if fit.callbacks else Monitored.NOTHING)
        if fit.validation_split_from_train is None and not fit.callbacks:
            return cls(Monitored.NOTHING)
        return cls(Monitored.TRAIN_SPLIT, fit.validation_split_from_train or DEFAULT_FRACTION, grouped)

    @classmethod
    def before_record(cls, spec: ExperimentSpec) -> Monitoring:
        """What a folder started before the record did: the test fold, unless a split was set.

        That gridcv drew ``validation_split_from_train`` without regard to groups.
        """
        split = spec.fit.validation_split_from_train
        if split is not None:
            return cls(Monitored.TRAIN_SPLIT, split, by_group=False, started_before=True)
        return cls(Monitored.TEST_FOLD if spec.fit.callbacks else Monitored.NOTHING, started_before=True)

    @classmethod
    def of_folder(
        cls, record: dict[str, Any] | None, has_fingerprint: bool, spec: ExperimentSpec, grouped: bool
    ) -> Monitoring:
        """A folder's monitoring: its record, else as it was started before records, else the experiment's.

        Args:
            record: The store's ``monitoring`` metadata, or None.
            has_fingerprint: Whether the folder was started (it has a fingerprint).
            spec: The experiment.
            grouped: Whether its splitter uses groups.
        """
        if record is not None:
            return cls.from_meta(record)
        return cls.before_record(spec) if has_fingerprint else cls.of(spec, grouped)

    def as_meta(self) -> dict[str, Any]:
        """The record kept in the store's metadata."""
        return {
            "monitored": self.monitored.value,
            "fraction": self.fraction,
            "by_group": self.by_group,
            "started_before": self.started_before,
        }

    @classmethod
    def from_meta(cls, value: dict[str, Any]) -> Monitoring:
        """Reads back :meth:`as_meta`."""
        return cls(
            Monitored(value["monitored"]),
            value.get("fraction"),
            bool(value.get("by_group")),
            bool(value.get("started_before")),
        )

    def same_samples(self, other: Monitoring) -> bool:
        """Whether both monitor the same samples (how the choice was made aside)."""
        return (self.monitored, self.fraction, self.by_group) == (other.monitored, other.fraction, other.by_group)

    def run_message(self, folder: Path, grouped: bool) -> str | None:
        """The note a run prints once, or None when the folder monitors what a new one would.

        Args:
            folder: The results folder.
            grouped: Whether the splitter uses groups.
        """
        again = "Pass --restart to start it again with the default (the old results are moved aside and kept)."
        if self.started_before and self.monitored is Monitored.TEST_FOLD:
            return (
                f"{folder} was started before gridcv monitored a part of each training split by default: "
                "its callbacks monitor each fold's test split, and so do its remaining folds, so that its folds "
                f"are not mixed with folds computed the new way; its test scores are optimistic. {again}"
            )
        if self.monitored is Monitored.TEST_FOLD:
            return (
                "warning: fit.monitor_test_fold is true: callbacks monitor each fold's test split, the samples "
                "it is then scored on, so the epochs are chosen on the test data and the test scores are "
                "optimistic. Remove the key to monitor a part of each training split (the default)."
            )
        if self.started_before and self.monitored is Monitored.TRAIN_SPLIT and grouped and not self.by_group:
            return (
                f"{folder} was started before gridcv kept groups apart in the monitored part of each training "
                "split: its remaining folds draw that part without regard to groups too, so that its folds are "
                f"not mixed with folds computed the new way. {again}"
            )
        return None


def results_warnings(record: dict[str, Any] | None) -> list[str]:
    """The warnings results carry (``load_results(...).attrs["warnings"]``), from a folder's record."""
    if record is None or Monitoring.from_meta(record).monitored is not Monitored.TEST_FOLD:
        return []
    why = (
        "the folder was started before gridcv monitored a part of each training split by default"
        if record.get("started_before")
        else "fit.monitor_test_fold: true"
    )
    return [
        f"callbacks monitored each fold's test split ({why}), so the epochs were chosen on the samples "
        "then scored and the test scores are optimistic."
    ]
