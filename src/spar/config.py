"""The run configuration: one typed section per stage (the classes of ``spar.settings``), validated
on load. YAML recipes give values, the command line overrides them, and the resolved config (every
default written out) is saved in the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from spar.settings import (AutoIFSettings, BootstrapSettings, EngineSettings, EvalSettings, ExecutorSettings, LauncherSettings, JudgeSettings, NegativesSettings, PromptsSettings,
                           RewardSettings, RFTSettings, SampleSettings, SearchSettings, SelfSettings, Settings,
                           TrainSettings, sft_defaults)


class RunConfig(Settings):
    name: str = "spar"
    model: str = "embedded"  # the actor's base model
    refiner: str | None = None  # the refiner's base model; None = the same as the actor
    iterations: int = Field(1, ge=1)
    seed: int = 0
    batch_size: int = Field(16, ge=1)  # sequences per forward pass
    # inference dtype of transformers models; None: bf16 where the hardware computes in it natively
    # (CUDA; CPUs with AVX512-BF16 or AMX), fp32 elsewhere. Training keeps fp32 on a CPU.
    dtype: Literal["fp32", "bf16", "fp16"] | None = None
    method: Literal["spar", "self_rewarding", "meta_rewarding", "self", "autoif"] = "spar"  # spar.methods
    prompts: PromptsSettings = PromptsSettings()
    sample: SampleSettings = SampleSettings()
    judge: JudgeSettings = JudgeSettings()
    negatives: NegativesSettings = NegativesSettings()
    search: SearchSettings = SearchSettings()
    rft: RFTSettings = RFTSettings()
    train_actor: TrainSettings = TrainSettings()
    train_refiner: TrainSettings = sft_defaults()
    bootstrap: BootstrapSettings = BootstrapSettings()
    reward: RewardSettings = RewardSettings()
    self_refine: SelfSettings = SelfSettings()
    autoif: AutoIFSettings = AutoIFSettings()
    eval: EvalSettings = EvalSettings()
    engine: EngineSettings = EngineSettings()  # vLLM's engine settings (vllm:... models)
    executor: ExecutorSettings = ExecutorSettings()  # local, or generation spread over Ray actors
    launcher: LauncherSettings = LauncherSettings()  # training in this process, or under accelerate launch

    @model_validator(mode="after")
    def _teacher(self) -> "RunConfig":
        if self.bootstrap.refiner == "teacher" and not self.bootstrap.teacher:
            raise ValueError("bootstrap.refiner=teacher needs bootstrap.teacher (a model string)")
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or "/" in v:
            raise ValueError("name must be a non-empty file name")
        return v


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML recipe (or defaults), apply dotted overrides (``{"search.budget": 6}``), validate."""
    from spar.io import DataError

    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such recipe" if not path.exists() else f"{path}: a recipe is a YAML file, not a directory")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise DataError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(data, dict):
            raise DataError(f"{path}:1: a recipe is a mapping of settings")
    for key, value in (overrides or {}).items():
        node, model = data, RunConfig
        *parents, last = key.split(".")
        for i, p in enumerate(parents):
            field = model.model_fields.get(p) if model is not None else None
            section = _section_model(field.annotation) if field is not None else None
            node = node.setdefault(p, {}) if isinstance(node, dict) else None
            if not isinstance(node, dict) or (model is not None and section is None):
                raise DataError(f"--set {key}: {'.'.join(parents[:i + 1])} is not a section of settings")
            model = section if isinstance(section, type) else None
        node[last] = value
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        line = _line_of(path, loc.split(".")[-1]) if path else None
        where = f"{path}:{line}" if line else str(path or "config")
        raise DataError(f"{where}: {loc}: {err['msg']}") from None
    return cfg


def _section_model(annotation: Any):
    """The settings class of a section field (``Optional`` unwrapped), True for a free-form mapping,
    None for a value."""
    import typing

    from pydantic import BaseModel

    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    for a in args:
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
        if a is dict or typing.get_origin(a) is dict:
            return True
    return None


def _line_of(path: Path, key: str) -> int | None:
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip().startswith(f"{key}:"):
            return i
    return None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
