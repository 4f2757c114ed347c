"""Which device each slot's worker gets, worked out in the parent from a faked device list (no GPU,
no TensorFlow). tests/test_slots.py checks what real workers then receive."""

from __future__ import annotations

import pytest

from gridcv.config import ExecutionSpec
from gridcv.errors import ConfigError
from gridcv.execution import placement
from gridcv.execution.placement import (
    WorkerSetup,
    cpu_slots,
    device_of,
    parse_gpu_listing,
    plan_slots,
    thread_share,
    visible_gpus,
)

TWO_GPUS = """GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5c3e1a2b-0000-1111-2222-333344445555)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-9f8e7d6c-0000-1111-2222-333344445555)
"""
WITH_MIG = """GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5c3e1a2b-0000-1111-2222-333344445555)
  MIG 3g.20gb     Device  0: (UUID: MIG-0d1e2f3a-aaaa-bbbb-cccc-ddddeeeeffff)
  MIG 3g.20gb     Device  1: (UUID: MIG-4b5c6d7e-aaaa-bbbb-cccc-ddddeeeeffff)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-9f8e7d6c-0000-1111-2222-333344445555)
"""
PCI = ("CUDA_DEVICE_ORDER", "PCI_BUS_ID")


def plan(environ=None, listing=TWO_GPUS, deterministic=False, **execution):
    spec = ExecutionSpec.model_validate(execution)
    return plan_slots(spec, deterministic, "exp.yaml", environ or {}, lambda: listing)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TWO_GPUS, ("0", "1")),
        (WITH_MIG, ("MIG-0d1e2f3a-aaaa-bbbb-cccc-ddddeeeeffff", "MIG-4b5c6d7e-aaaa-bbbb-cccc-ddddeeeeffff", "1")),
        ("No devices found.\n", ()),
        ("", ()),
    ],
)
def test_nvidia_smi_listing_gives_each_gpu_or_its_mig_instances(text, expected):
    assert parse_gpu_listing(text) == expected


@pytest.mark.parametrize(
    ("inherited", "expected"),
    [
        ("2,3", ("2", "3")),  # a Slurm allocation or a container: a subset
        ("GPU-5c3e1a2b,GPU-9f8e7d6c", ("GPU-5c3e1a2b", "GPU-9f8e7d6c")),
        ("MIG-0d1e2f3a-aaaa-bbbb-cccc-ddddeeeeffff", ("MIG-0d1e2f3a-aaaa-bbbb-cccc-ddddeeeeffff",)),
        (" 0 , 1 ", ("0", "1")),
        ("0,-1,1", ("0",)),  # CUDA stops reading at the first invalid entry
        ("-1", ()),
        ("", ()),
        ("NoDevFiles", ()),
    ],
)
def test_an_inherited_cuda_visible_devices_is_taken_as_it_is(inherited, expected):
    never = lambda: pytest.fail("nvidia-smi must not be asked when CUDA_VISIBLE_DEVICES is set")  # noqa: E731
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": inherited}, never) == expected


def test_without_cuda_visible_devices_nvidia_smi_lists_the_gpus():
    assert visible_gpus({}, lambda: TWO_GPUS) == ("0", "1")
    assert visible_gpus({}, lambda: None) == ()  # no driver, no nvidia-smi


def test_auto_gives_one_worker_per_visible_gpu_each_seeing_only_its_own():
    assert plan() == (
        WorkerSetup("GPU 0", "GPU 0", (("CUDA_VISIBLE_DEVICES", "0"), PCI)),
        WorkerSetup("GPU 1", "GPU 1", (("CUDA_VISIBLE_DEVICES", "1"), PCI)),
    )


def test_an_inherited_subset_is_numbered_from_zero_and_keeps_its_device_order():
    environ = {"CUDA_VISIBLE_DEVICES": "2,3", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"}
    order = ("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    assert plan(environ, devices=[1]) == (WorkerSetup("GPU 3", "GPU 3", (("CUDA_VISIBLE_DEVICES", "3"), order)),)


def test_gpus_by_uuid_prefix_and_mig_ids_get_short_slot_names():
    (by_uuid,) = plan(devices=["GPU-9f8e"])  # the beginning of GPU 1's UUID in nvidia-smi -L
    assert (by_uuid.slot, by_uuid.environ) == ("GPU 1", (("CUDA_VISIBLE_DEVICES", "1"), PCI))
    environ = {"CUDA_VISIBLE_DEVICES": "GPU-5c3e1a2b-0000-1111,MIG-0d1e2f3a-aaaa-bbbb"}
    assert [(s.slot, s.device) for s in plan(environ)] == [
        ("GPU-5c3e1a2b…", "GPU GPU-5c3e1a2b-0000-1111"),
        ("MIG-0d1e2f3a…", "GPU MIG-0d1e2f3a-aaaa-bbbb"),
    ]


def test_several_workers_per_gpu_share_it_under_a_hard_memory_cap():
    setups = plan(devices=[0], workers_per_device=2, gpu_memory_limit="10GiB")
    assert [(s.slot, s.gpu_memory_limit) for s in setups] == [("GPU 0 1/2", 10 * 2**30), ("GPU 0 2/2", 10 * 2**30)]
    assert {s.environ for s in setups} == {(("CUDA_VISIBLE_DEVICES", "0"), PCI)}


def test_cpu_slots_split_the_cores_but_not_in_deterministic_mode(monkeypatch):
    monkeypatch.setattr(placement, "cpu_cores", lambda: 8)
    assert plan(listing=None, slots=3) == tuple(WorkerSetup(f"cpu {i}/3", "cpu", (), 2) for i in (1, 2, 3))
    assert [s.threads for s in plan(listing=None, slots=3, deterministic=True)] == [None, None, None]
    assert plan(listing=None) == (WorkerSetup("cpu", "cpu", (), None),)  # one slot: TensorFlow's defaults


def test_devices_cpu_hides_the_gpus_and_uses_slots():
    assert plan(devices="cpu", slots=2, deterministic=True) == (
        WorkerSetup("cpu 1/2", "cpu", (("CUDA_VISIBLE_DEVICES", "-1"),), None),
        WorkerSetup("cpu 2/2", "cpu", (("CUDA_VISIBLE_DEVICES", "-1"),), None),
    )


@pytest.mark.parametrize(
    ("slots", "deterministic", "cores", "expected"),
    [(1, False, 16, None), (2, False, 16, 8), (3, False, 2, 1), (4, True, 16, None), (2, False, 3, 1)],
)
def test_thread_share(slots, deterministic, cores, expected):
    assert thread_share(slots, deterministic, cores) == expected
    assert [s.threads for s in cpu_slots(slots, deterministic, cores=cores)] == [expected] * slots


@pytest.mark.parametrize(
    ("execution", "environ", "message"),
    [
        (
            {"devices": [2]},
            {},
            "exp.yaml: execution.devices: GPU 2 is not visible: 2 GPU(s) are (0, 1, from nvidia-smi -L). Numbers "
            "count the visible GPUs from 0; text names a GPU's UUID (or its beginning) or a MIG id. Use devices: "
            "auto to take every visible GPU, or cpu.",
        ),
        (
            {"devices": [0]},
            {"CUDA_VISIBLE_DEVICES": ""},
            "exp.yaml: execution.devices: GPU 0 is not visible: 0 GPU(s) are (none, from CUDA_VISIBLE_DEVICES). "
            "Numbers count",
        ),
        (
            {"devices": ["GPU-"]},
            {"CUDA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"},
            "exp.yaml: execution.devices: 'GPU-' names several GPUs (GPU-aa, GPU-bb, from CUDA_VISIBLE_DEVICES).",
        ),
        (
            {"devices": [0, "0"]},
            {},
            "exp.yaml: execution.devices [0, '0'] names a GPU twice. Name each once; for several folds at once on "
            "one GPU, set execution.workers_per_device (with execution.gpu_memory_limit).",
        ),
        (
            {"workers_per_device": 2},
            {},
            "exp.yaml: execution.workers_per_device is 2, but several workers on one GPU need "
            "execution.gpu_memory_limit (e.g. 10GiB): with memory growth alone the first worker's model can take "
            "the memory the others need. Set gpu_memory_limit to at most the GPU's memory divided by "
            "workers_per_device, or set workers_per_device: 1.",
        ),
    ],
)
def test_devices_that_cannot_be_had_are_refused_with_the_fix(execution, environ, message):
    with pytest.raises(ConfigError) as refused:
        plan(environ, **execution)
    assert str(refused.value).startswith(message)


def test_workers_per_device_means_nothing_on_the_cpu():
    assert plan(listing=None, workers_per_device=2, slots=2, deterministic=True) == cpu_slots(2, True)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({"CUDA_VISIBLE_DEVICES": "1"}, "GPU 1"), ({"CUDA_VISIBLE_DEVICES": "-1"}, "cpu"), ({}, "default")],
)
def test_a_worker_names_the_device_its_environment_gives_it(environ, expected):
    assert device_of(environ, "default") == expected


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("auto", "auto"),
        ("CPU", "cpu"),
        ("0,1", [0, 1]),
        (1, [1]),
        ([0, "GPU-5c3e"], [0, "GPU-5c3e"]),
        ("GPU-5c", ["GPU-5c"]),
    ],
)
def test_devices_are_written_as_a_word_a_number_or_a_list(written, expected):
    assert ExecutionSpec(devices=written).devices == expected


def test_an_empty_device_list_is_refused():
    with pytest.raises(ValueError, match="an empty list names no device; write auto, cpu or a list such as"):
        ExecutionSpec(devices=[])
