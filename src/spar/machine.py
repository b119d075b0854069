"""One line naming the machine a figure came from, for manifests and bench output."""

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
