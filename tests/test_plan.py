"""The plan: ParameterGrid x splitter, stable ids, derived seeds, clear split errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import ParameterGrid, StratifiedKFold

from gridcv.config import ExperimentSpec
from gridcv.errors import ConfigError
from gridcv.plan import derive_seed, make_plan

Y = np.arange(30) % 3


def spec(**overrides) -> ExperimentSpec:
    base = {
        "name": "p",
        "data": {"kind": "arrays", "x": "x.npy", "y": "y.npy"},
        "model": "m.py:build",
        "grid": {"b": [1, 2], "a": ["x", "y"]},
        "cv": {"splitter": "StratifiedKFold", "n_splits": 3, "shuffle": True, "random_state": 0},
    }
    base.update(overrides)
    return ExperimentSpec.model_validate(base)


def test_order_is_candidate_major_in_parameter_grid_order():
    plan = make_plan(spec(), Y)
    expected = list(ParameterGrid({"b": [1, 2], "a": ["x", "y"]}))
    assert [dict(t.params) for t in plan.tasks] == [p for p in expected for _ in range(3)]
    assert [t.fold for t in plan.tasks] == [0, 1, 2] * 4
    assert [t.candidate_index for t in plan.tasks] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_ids_are_stable_unique_and_content_derived():
    first, second = make_plan(spec(), Y), make_plan(spec(grid={"a": ["x", "y"], "b": [1, 2]}), Y)
    assert [t.task_id for t in first.tasks] == [t.task_id for t in second.tasks]
    assert len({t.task_id for t in first.tasks}) == 12
    assert len({t.candidate_id for t in first.tasks}) == 4
    # adding a grid value keeps the ids of the existing tasks
    extended = make_plan(spec(grid={"b": [1, 2, 3], "a": ["x", "y"]}), Y)
    assert {t.task_id for t in first.tasks} < {t.task_id for t in extended.tasks}


def test_seeds_derive_from_experiment_seed_and_task_id():
    plan = make_plan(spec(seed=7), Y)
    assert all(t.seed == derive_seed(7, t.task_id) for t in plan.tasks)
    assert len({t.seed for t in plan.tasks}) == 12
    assert [t.seed for t in plan.tasks] != [t.seed for t in make_plan(spec(seed=8), Y).tasks]


def test_every_sample_is_validated_exactly_once_per_candidate():
    plan = make_plan(spec(), Y)
    tests = np.concatenate([te for _, te in plan.splits])
    assert sorted(tests.tolist()) == list(range(30))
    reference = list(StratifiedKFold(3, shuffle=True, random_state=0).split(np.zeros((30, 1)), Y))
    for (tr, te), (rtr, rte) in zip(plan.splits, reference, strict=True):
        assert tr.tolist() == rtr.tolist() and te.tolist() == rte.tolist()


def test_unseeded_shuffling_splitter_is_seeded_from_the_experiment():
    a = make_plan(spec(seed=3, cv={"splitter": "KFold", "n_splits": 3, "shuffle": True}), Y)
    b = make_plan(spec(seed=3, cv={"splitter": "KFold", "n_splits": 3, "shuffle": True}), Y)
    assert [te.tolist() for _, te in a.splits] == [te.tolist() for _, te in b.splits]


def test_list_of_grids_drops_repeated_candidates():
    plan = make_plan(spec(grid=[{"b": [1, 2]}, {"b": [2, 3]}]), Y)
    assert [dict(c) for c in plan.candidates] == [{"b": 1}, {"b": 2}, {"b": 3}]


def test_more_splits_than_members_of_a_class_is_a_config_error():
    y = np.array([0] * 10 + [1] * 2)
    with pytest.raises(ConfigError) as err:
        make_plan(spec(), y, source="exp.yaml")
    assert str(err.value) == (
        "exp.yaml: key 'cv.n_splits' is 3, but class 1 has only 2 samples, so some validation folds "
        "would not contain it. Lower cv.n_splits to at most 2, or use KFold if that is intended."
    )


def test_group_splitter_without_groups_is_a_config_error():
    with pytest.raises(ConfigError, match=r"exp.yaml: key 'cv' cannot split these 30 samples with GroupKFold"):
        make_plan(spec(cv={"splitter": "GroupKFold", "n_splits": 3}), Y, source="exp.yaml")


def test_too_few_images_of_a_label_for_stratified_segmentation_splits():
    segmentation = {"kind": "images", "root": "im", "masks": "m", "n_classes": 3}
    y = np.array([0] * 10 + [2] * 2)
    with pytest.raises(ConfigError) as err:
        make_plan(spec(data=segmentation, scoring="mean_iou"), y, source="exp.yaml")
    assert str(err.value) == (
        "exp.yaml: key 'cv.n_splits' is 3, but only 2 image(s) have label 2 (the dominant class of their mask, or "
        "their data.y_column label), which stratified splits keep in every fold. Lower cv.n_splits to at most 2, "
        "give the images labels to stratify by in a CSV column (kind: csv, data.y_column), or use KFold."
    )


def test_regression_and_multilabel_split_labels():
    from gridcv.plan import split_labels

    assert split_labels("regression", np.array([0.5, 1.5, 2.5])).tolist() == [0, 0, 0]
    assert split_labels("multilabel", np.array([[0, 1], [1, 1], [0, 1]])).tolist() == [0, 1, 0]
    assert split_labels("classification", np.array([2, 0])).tolist() == [2, 0]
