"""LoRA adapters as models.

A folder holding a PEFT adapter (``adapter_config.json`` + ``adapter_model.safetensors``) is a model
string like any other: spar loads its base, applies the adapter and merges it (in fp32, then casts to
the inference dtype), so search, judging, evaluation and further training see one ordinary model.
``spar train sft --set lora=true`` writes such a folder; when its base is a packaged model the folder
records the packaged *name* (``embedded``), not this machine's cache path, so the folder can be
copied to another machine. Training with LoRA *from* an adapter trains a new adapter on the merged
model and records the starting adapter as its base (by name when it ships with spar, else by its
absolute path): adapters stack, and loading one merges its whole chain.

Adapters that ship with spar have names (:data:`SHIPPED`), e.g. ``embedded-refiner``: the refiner
bootstrapped by ``spar bootstrap refiner`` from the recipe in its folder's ``RECIPE.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

from spar.llm import BackendError

CONFIG = "adapter_config.json"
# name -> folder inside the installed package (spar/adapters/<folder>)
SHIPPED = {"embedded-refiner": "embedded-refiner"}


def shipped_path(name: str) -> Path:
    return Path(__file__).resolve().parent.parent / "adapters" / SHIPPED[name]


def resolve(model: str) -> str:
    """A shipped adapter's name -> its folder; any other model string unchanged."""
    if model in SHIPPED:
        folder = shipped_path(model)
        if not (folder / CONFIG).is_file():
            raise BackendError(f"model {model!r}: the shipped adapter is missing from {folder} (a broken install?)")
        return str(folder)
    return model


def is_adapter(model: str | Path) -> bool:
    return (Path(model) / CONFIG).is_file()


def base_of(folder: str | Path) -> str:
    """The base model string an adapter folder records."""
    path = Path(folder) / CONFIG
    try:
        base = json.loads(path.read_text()).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError) as e:
        raise BackendError(f"{path}: not a readable adapter config ({e})") from None
    if not isinstance(base, str) or not base:
        raise BackendError(f"{path}: names no base model (base_model_name_or_path)")
    return base


def base_weights(base: str) -> str:
    """The local weights of a base model string (a packaged name is converted once if it is not yet)."""
    from spar.llm.embedded import PACKAGED, packaged_model_path

    return str(packaged_model_path(base)) if base in PACKAGED else base


def portable_base(folder: str | Path) -> None:
    """Record a packaged base by name in a saved adapter's config, not by this machine's cache path."""
    from spar.llm.embedded import PACKAGED, packaged_cache_dir

    path = Path(folder) / CONFIG
    config = json.loads(path.read_text())
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str):
        return
    for name in PACKAGED:
        try:
            same = Path(base).resolve() == packaged_cache_dir(name).resolve()
        except OSError:
            same = False
        if same:
            config["base_model_name_or_path"] = name
            path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            return


def record_base(folder: str | Path, base: str) -> None:
    """Make a saved adapter name ``base`` (a model string: a packaged or shipped name, a path) as its base."""
    path = Path(folder) / CONFIG
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def stacked_base(start: str) -> str | None:
    """What an adapter trained from model string ``start`` records as its base: ``start`` itself when
    it is an adapter (its shipped name, or its absolute path), else None (the base is recorded as usual)."""
    folder = resolve(start)
    if not is_adapter(folder):
        return None
    for name in SHIPPED:  # a shipped adapter by its name, however it was given
        if Path(folder).resolve() == shipped_path(name).resolve():
            return name
    return str(Path(folder).resolve())


MAX_CHAIN = 8  # adapters on adapters; deeper is taken for a loop


def load_merged(folder: str | Path, dtype=None, _depth: int = 0):
    """The adapter's base with the adapter merged in fp32, cast to ``dtype`` (default fp32). A base
    that is itself an adapter is loaded merged first (a stack of adapters)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import warnings

    if _depth >= MAX_CHAIN:
        raise BackendError(f"adapter {folder}: more than {MAX_CHAIN} adapters stacked on one another (a loop?)")
    base = resolve(base_of(folder))
    try:
        if is_adapter(base):
            model = load_merged(base, torch.float32, _depth + 1)
        else:
            base = base_weights(base)
            model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        with warnings.catch_warnings():  # PEFT asks transformers a deprecated question on load (FutureWarning): not the user's
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    except (OSError, ValueError, RuntimeError) as e:
        raise BackendError(f"cannot load adapter {folder} on its base {base!r}: {e}") from None
    for p in model.parameters():  # PEFT froze the base weights; the merged model is a model like any other
        p.requires_grad_(True)
    return model.to(dtype or torch.float32)


def tokenizer_folder(folder: str | Path) -> str:
    """Where an adapter's tokenizer is: its own folder when saved with it, else its base's."""
    folder = Path(folder)
    if (folder / "tokenizer_config.json").is_file():
        return str(folder)
    base = resolve(base_of(folder))
    return tokenizer_folder(base) if is_adapter(base) else base_weights(base)
