"""Tests for core/hardware.py: which devices and dtypes are accepted, what 'auto' picks, one-line errors for a
device this machine lacks, mixed precision, and the peak-FLOPs lookup behind MFU."""

import warnings

import pytest
import torch

from core.configurator import ConfigError
from core.entry import run_main
from core.hardware import (
    PEAK_BF16_FLOPS,
    autocast,
    check_device,
    check_dtype,
    device_type,
    enable_tf32,
    peak_flops,
    resolve_device,
    resolve_dtype,
)

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = torch.backends.mps.is_available()


@pytest.mark.parametrize("name", ["auto", "cpu", "mps", "cuda", "cuda:0", "cuda:12"])
def test_check_device_accepts(name):
    check_device(name)


@pytest.mark.parametrize("name", ["", "gpu", "CUDA", "Cpu", "cuda:", "cuda:-1", "cuda:0,1", "cuda 0", "cpu ", "tpu", "cuda:x"])
def test_check_device_refuses_and_names_the_value(name):
    with pytest.raises(ValueError) as error:
        check_device(name)
    assert repr(name) in str(error.value)


@pytest.mark.parametrize("name", ["auto", "float32", "bfloat16"])
def test_check_dtype_accepts(name):
    check_dtype(name)


@pytest.mark.parametrize("name", ["", "float16", "fp32", "bf16", "Float32", "float64"])
def test_check_dtype_refuses_and_names_the_value(name):
    with pytest.raises(ValueError) as error:
        check_dtype(name)
    assert repr(name) in str(error.value)


@pytest.mark.parametrize("device,kind", [("cpu", "cpu"), ("mps", "mps"), ("cuda", "cuda"), ("cuda:1", "cuda")])
def test_device_type(device, kind):
    assert device_type(device) == kind


def test_cpu_is_always_available():
    assert resolve_device("cpu") == "cpu"


@pytest.mark.skipif(HAS_CUDA or HAS_MPS, reason="auto picks the GPU here")
def test_auto_is_cpu_on_a_machine_without_a_gpu():
    assert resolve_device("auto") == "cpu"
    assert resolve_device() == "cpu"


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_auto_prefers_cuda_and_its_bf16():
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:0") == "cuda:0"
    assert resolve_dtype("auto", "cuda") == ("bfloat16" if torch.cuda.is_bf16_supported() else "float32")


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is present")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_asking_for_cuda_without_it_is_one_line_naming_the_device(device):
    with pytest.raises(ConfigError) as error:
        resolve_device(device)
    message = str(error.value)
    assert "\n" not in message
    assert f"device {device!r} was asked for" in message
    assert "--device=cpu" in message


@pytest.mark.skipif(HAS_MPS, reason="MPS is present")
def test_asking_for_mps_without_it_is_one_line():
    with pytest.raises(ConfigError) as error:
        resolve_device("mps")
    assert "\n" not in str(error.value) and "'mps'" in str(error.value)


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is present")
def test_a_missing_device_ends_a_script_with_status_2(capsys):
    assert run_main("train.py", lambda: resolve_device("cuda")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device 'cuda' was asked for") and err.count("\n") == 1


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_a_gpu_number_past_the_last_one_is_refused():
    with pytest.raises(ConfigError, match="numbered from 0"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_auto_dtype_is_float32_off_cuda(device):
    assert resolve_dtype("auto", device) == "float32"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_an_explicit_dtype_is_kept(dtype):
    assert resolve_dtype(dtype, "cpu") == dtype


def test_float32_autocast_changes_nothing():
    a = torch.randn(4, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning about an unsupported autocast dtype
        context = autocast("cpu", "float32")
    with context:
        assert not torch.is_autocast_enabled("cpu")
        assert (a @ a.T).dtype == torch.float32


def test_bfloat16_autocast_runs_matmuls_in_bf16_on_cpu():
    a = torch.randn(4, 8)
    linear = torch.nn.Linear(8, 3)
    with autocast("cpu", "bfloat16"):
        assert (a @ a.T).dtype == torch.bfloat16
        assert linear(a).dtype == torch.bfloat16
    assert (a @ a.T).dtype == torch.float32  # only inside the block
    assert linear.weight.dtype == torch.float32  # the parameters stay float32


@pytest.fixture
def tf32_flags():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_enable_tf32_only_for_cuda(tf32_flags):
    enable_tf32("cpu")
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    enable_tf32("cuda:1")
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32


def test_peak_flops_is_unknown_off_cuda():
    assert peak_flops("cpu") is None
    assert peak_flops("mps") is None


def test_peak_flops_override_is_in_tflops_on_any_device():
    assert peak_flops("cpu", 2.5) == 2.5e12
    assert peak_flops("cuda:0", 100) == 100e12


def test_no_table_entry_is_hidden_behind_an_earlier_one():
    # the first key found in the GPU's name wins, so a key that contains an earlier key could never match
    keys = [key for key, _ in PEAK_BF16_FLOPS]
    for i, earlier in enumerate(keys):
        for later in keys[i + 1 :]:
            assert earlier not in later, f"{later!r} is never reached: {earlier!r} comes first"
    assert all(flops > 0 for _, flops in PEAK_BF16_FLOPS)


@pytest.fixture
def gpu_named(monkeypatch):
    """peak_flops("cuda") as on a GPU that torch names `name`; only the name is made up (this machine may have no GPU)."""

    def peak(name):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        return peak_flops("cuda")

    return peak


@pytest.mark.parametrize(
    "name,flops",
    [
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA A100-PCIE-40GB", 312e12),
        ("NVIDIA L40S", 362e12),
        ("NVIDIA L4", 121e12),
        ("NVIDIA RTX A6000", 155e12),
        ("NVIDIA GeForce RTX 4090", 165e12),
        ("NVIDIA GeForce RTX 3090", 71e12),
        ("Tesla V100-SXM2-16GB", 125e12),
        ("Tesla T4", 65e12),
    ],
)
def test_peak_flops_of_a_listed_gpu(gpu_named, name, flops):
    assert gpu_named(name) == flops


@pytest.mark.parametrize("name", ["NVIDIA A10G", "NVIDIA GeForce GTX 1080 Ti", "NVIDIA A40"])
def test_peak_flops_of_an_unlisted_gpu_is_unknown(gpu_named, name):
    assert gpu_named(name) is None


@pytest.mark.parametrize("name", ["NVIDIA L40", "NVIDIA T400"])
def test_peak_flops_of_an_unlisted_gpu_named_like_a_listed_one_is_unknown(gpu_named, name):
    assert gpu_named(name) is None


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_bfloat16_autocast_on_cuda():
    a = torch.randn(4, 8, device="cuda")
    with autocast("cuda:0", "bfloat16"):
        assert (a @ a.T).dtype == torch.bfloat16
