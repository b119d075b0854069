"""The device and dtype a transformers model runs in, checked with torch alone (no transformers
import), so that a command can refuse a bad --device or --dtype before it loads anything."""

from __future__ import annotations

import torch

from spar.llm import BackendError

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp16": torch.float16, "float16": torch.float16}


def pick_device(device: str | None) -> str:
    """The device to run on: the one asked for, checked to exist before anything is loaded onto
    it, or CUDA where there is one and the CPU elsewhere."""
    if not device:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise BackendError(f"--device {device}: not a device ({e})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(f"--device {device}: this machine has no CUDA device (torch {torch.__version__})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackendError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices (0 to "
                               f"{torch.cuda.device_count() - 1})")
    elif dev.type not in ("cpu", "mps"):
        raise BackendError(f"--device {device}: spar runs on cpu, cuda or mps")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise BackendError(f"--device {device}: MPS is not available on this machine")
    return device


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX). torch keeps these
    probes private, hence the getattr: a torch without them counts as no."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, p, lambda: False)() for p in probes)


def pick_dtype(dtype: str | None, device: str) -> torch.dtype:
    """The dtype to run inference in. By default bf16 where the hardware computes in it natively
    (CUDA; CPUs with AVX512-BF16 or AMX, where bf16 matmuls are ~4x faster than fp32 on the 2-core
    machine of bench/README.md), fp32 elsewhere (a CPU without native bf16 emulates it, slowly)."""
    if dtype is None:
        native = device.startswith("cuda") or (device == "cpu" and cpu_has_bf16())
        return torch.bfloat16 if native else torch.float32
    if dtype not in _DTYPES:
        raise BackendError(f"unknown dtype {dtype!r}; choose one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]
