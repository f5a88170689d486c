"""The vLLM backend's settings and start-up failures, without vLLM (tests/vllm runs the real engine)."""

import pytest

from distill.backends.base import BackendError
from distill.backends.config import BackendConfig
from distill.backends.vllm_backend import engine_kwargs, start_failure

# What vLLM 0.32's CPU engine printed when it refused to start on a machine with 10 of 13 GiB free (abridged)
_STARTUP_REFUSAL = """\
(MainProcess pid=7206) INFO 12-03 05:26:10 [model.py:2495] Downcasting torch.float32 to torch.bfloat16.
(VllmWorker-0 pid=7553) ERROR 12-03 05:27:05 [multiproc_executor.py:953] WorkerProc failed to start.
(VllmWorker-0 pid=7553) ERROR 12-03 05:27:05 [multiproc_executor.py:953] Traceback (most recent call last):
(VllmWorker-0 pid=7553) ERROR 12-03 05:27:05 [multiproc_executor.py:953]     raise ValueError(
(VllmWorker-0 pid=7553) ERROR 12-03 05:27:05 [multiproc_executor.py:953] ValueError: Available memory on node 0 \
(9.97/13.21 GiB) on startup is less than desired CPU memory utilization (0.92, 12.16 GiB). On the CPU backend, the \
`--gpu-memory-utilization` flag controls the fraction of CPU memory reserved (despite its name). To resolve: decrease \
`--gpu-memory-utilization` (e.g. `--gpu-memory-utilization 0.5`) or reduce CPU memory used by other processes.
(EngineCore pid=7354) ERROR 12-03 05:27:08 [core.py:1510] Exception: WorkerProc initialization failed due to an \
exception in a background process. See stack trace for root cause.
Process EngineCore:
Traceback (most recent call last):
Exception: WorkerProc initialization failed due to an exception in a background process. See stack trace for root \
cause.
"""
_KV_CACHE_REFUSAL = """\
(EngineCore pid=8811) ERROR 12-03 05:40:12 [core.py:1510] ValueError: Available memory on node 0 (9.12/13.21 GiB) on \
kv cache allocation is less than requested memory for kv (97656.25 GiB). Decrease --kv-cache-memory-bytes, \
VLLM_CPU_KVCACHE_SPACE, or reduce CPU memory used by other processes.
"""
# What vLLM 0.26's GPU worker printed on an H200 while another process held 17 GiB of it (abridged)
_GPU_REFUSAL = """\
(EngineCore pid=4121) ERROR 12-04 12:16:40 [core.py:1510] ValueError: Free memory on device cuda:0 (123.0/139.8 GiB) \
on startup is less than desired GPU memory utilization (0.92, 128.62 GiB). Decrease GPU memory utilization or reduce \
GPU memory used by other processes.
"""
_OTHER = """\
(EngineCore pid=9001) ERROR 12-03 06:01:02 [core.py:1510] Traceback (most recent call last):
(EngineCore pid=9001) ERROR 12-03 06:01:02 [core.py:1510] ValueError: The model's max seq len (8192) is larger than \
the maximum number of tokens that can be stored in KV cache (4096).
"""


@pytest.mark.parametrize(
    "on_cpu,dtype,want",
    [
        (True, "auto", "float32"),  # never vLLM's own auto, which runs float32 weights in bfloat16 on a CPU
        (False, "auto", "bfloat16"),
        (True, "bfloat16", "bfloat16"),
        (False, "float32", "float32"),
    ],
)
def test_the_engine_is_always_told_the_dtype_the_help_promises(on_cpu, dtype, want):
    config = BackendConfig(backend="vllm", model="m", dtype=dtype)
    assert engine_kwargs(config, on_cpu=on_cpu)["dtype"] == want


def test_a_recipe_s_extra_engine_arguments_still_win():
    config = BackendConfig(backend="vllm", model="m", extra={"dtype": "float16", "max_model_len": 4096})
    assert engine_kwargs(config, on_cpu=True)["dtype"] == engine_kwargs(config, on_cpu=False)["dtype"] == "float16"


def test_the_gpu_memory_share_reaches_the_engine_only_when_given():
    assert "gpu_memory_utilization" not in engine_kwargs(BackendConfig(backend="vllm", model="m"), on_cpu=False)
    given = BackendConfig(backend="vllm", model="m", gpu_memory_utilization=0.8)
    assert engine_kwargs(given, on_cpu=False)["gpu_memory_utilization"] == 0.8
    with pytest.raises(ValueError):
        BackendConfig(backend="vllm", model="m", gpu_memory_utilization=1.5)


def test_a_gpu_another_process_holds_is_one_line_naming_the_flag_and_a_share_that_fits():
    message = str(start_failure(_GPU_REFUSAL, "/tmp/x.log"))
    assert "\n" not in message and "(123.0/139.8 GiB)" in message
    assert "--gpu-memory-utilization, e.g. 0.85" in message  # 123.0 / 139.8 = 0.88, less a margin
    assert message.endswith("vLLM's output is in /tmp/x.log")


def test_the_dtype_help_says_what_auto_means_on_each_device():
    description = BackendConfig.model_fields["dtype"].description
    assert "auto: bfloat16 on a GPU, float32 on a CPU" in description and "vLLM" in description


@pytest.mark.parametrize(
    "output,numbers",
    [
        (_STARTUP_REFUSAL, "(9.97/13.21 GiB) on startup is less than desired CPU memory utilization (0.92, 12.16 GiB)"),
        (_KV_CACHE_REFUSAL, "(9.12/13.21 GiB) on kv cache allocation is less than requested memory for kv (97656.25"),
    ],
)
def test_an_engine_short_of_memory_is_one_line_naming_the_setting(output, numbers):
    error = start_failure(output, "/tmp/vllm-engine-x.log")
    message = str(error)
    assert isinstance(error, BackendError) and "\n" not in message
    assert message.startswith("the vLLM engine did not start for lack of memory (Available memory on node 0 ")
    assert numbers in message and "VLLM_CPU_KVCACHE_SPACE=1" in message
    assert "--gpu-memory-utilization" not in message  # vLLM's advice names a flag distill does not have
    assert message.endswith("vLLM's output is in /tmp/vllm-engine-x.log")


def test_any_other_failed_start_names_the_first_exception_its_processes_report():
    message = str(start_failure(_OTHER + _STARTUP_REFUSAL.split("Process EngineCore:")[1], "/tmp/x.log"))
    assert message == (
        "the vLLM engine did not start: ValueError: The model's max seq len (8192) is larger than the maximum number "
        "of tokens that can be stored in KV cache (4096); vLLM's output is in /tmp/x.log"
    )
    assert str(start_failure("", "/tmp/x.log")) == "the vLLM engine did not start; vLLM's output is in /tmp/x.log"
