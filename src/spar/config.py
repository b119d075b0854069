"""The run configuration: one typed section per stage, validated on load. YAML recipes give values,
the command line overrides them, and the resolved config (every default written out) is saved in
the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromptsCfg(Section):
    source: Literal["procedural", "file"] = "procedural"
    path: str | None = None  # with source=file: a prompts JSONL (spar or IFEval rows)
    count: int = Field(64, ge=1)  # training prompts
    heldout: int = Field(32, ge=0)  # held-out procedural prompts for evaluation
    min_constraints: int = Field(1, ge=1)
    max_constraints: int = Field(3, ge=1)


class SampleCfg(Section):
    k: int = Field(5, ge=1)  # answers per prompt
    temperature: float = Field(0.9, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    max_new_tokens: int = Field(512, ge=1)


class JudgeCfg(Section):
    votes: int = Field(5, ge=1)
    mode: Literal["llm", "verifier", "hybrid"] = "hybrid"
    temperature: float = Field(0.7, ge=0)
    max_new_tokens: int = Field(384, ge=1)


class NegativesCfg(Section):
    per_prompt: Literal["one", "all"] | int = "one"


class SearchCfg(Section):
    strategy: Literal["bfs", "dfs", "greedy", "best_of_n", "iterative"] = "bfs"
    branch: int = Field(3, ge=1)
    select: int = Field(2, ge=1)
    depth: int = Field(3, ge=1)
    budget: int = Field(15, ge=1)
    temperature: float = Field(0.9, ge=0)
    max_new_tokens: int = Field(512, ge=1)
    prefill: bool = True
    # the guard (spar.roles.guard): an accepted refinement, and the chosen answer of a pair, must
    # stay the same answer as its parent / the rejected answer
    guard: bool = True
    min_similarity: float = Field(0.7, ge=0, le=1)  # case-folded rapidfuzz ratio / 100 (spar.roles.guard)
    max_length_ratio: float = Field(2.0, ge=1)  # length within this factor of the parent's, either way

    def guard_config(self):
        from spar.roles.guard import GuardConfig

        return GuardConfig(self.min_similarity, self.max_length_ratio) if self.guard else None


class RFTCfg(Section):
    balance: float = Field(0.5, ge=0, le=1)
    refinement_share: float | None = Field(None, ge=0, lt=1)


class TrainCfg(Section):
    """Passed to spar.train.TrainSettings (see its fields); unknown keys are rejected there."""

    model_config = ConfigDict(extra="allow")


class BootstrapCfg(Section):
    """Iteration 0: teach the refiner to edit before self-play (spar.selfplay.bootstrap)."""

    refiner: Literal["none", "offline", "teacher"] = "none"
    teacher: str | None = None  # model string of the teacher, with refiner=teacher
    prompts: int = Field(64, ge=1)  # procedural prompts (their own seed) whose answers are broken and restored
    k: int = Field(4, ge=1)  # answers per prompt
    per_answer: int = Field(2, ge=1)  # broken copies per answer
    extra: int = Field(2, ge=0)  # constraints an answer happens to meet, added to its prompt
    budget: int = Field(6, ge=1)  # teacher: judged refinements per failed answer
    train: TrainCfg = TrainCfg(learning_rate=2e-5, epochs=2, max_length=768)


class EvalCfg(Section):
    heldout: bool = True  # prompt-level strict accuracy on held-out procedural prompts
    ifeval_data: str | None = None  # IFEval input_data.jsonl; None = skip unless found at ifeval_default
    ifeval_limit: int | None = Field(None, ge=1)  # a fixed slice (the first N prompts); None = all 541
    max_new_tokens: int = Field(384, ge=1)


class RunConfig(Section):
    name: str = "spar"
    model: str = "embedded"  # the actor's base model
    refiner: str | None = None  # the refiner's base model; None = the same as the actor
    iterations: int = Field(1, ge=1)
    seed: int = 0
    batch_size: int = Field(16, ge=1)  # sequences per forward pass
    # inference dtype of transformers models; None: bf16 where the hardware computes in it natively
    # (CUDA; CPUs with AVX512-BF16 or AMX), fp32 elsewhere. Training keeps fp32 on a CPU.
    dtype: Literal["fp32", "bf16", "fp16"] | None = None
    prompts: PromptsCfg = PromptsCfg()
    sample: SampleCfg = SampleCfg()
    judge: JudgeCfg = JudgeCfg()
    negatives: NegativesCfg = NegativesCfg()
    search: SearchCfg = SearchCfg()
    rft: RFTCfg = RFTCfg()
    train_actor: TrainCfg = TrainCfg()
    train_refiner: TrainCfg = TrainCfg(learning_rate=1e-6)
    bootstrap: BootstrapCfg = BootstrapCfg()
    eval: EvalCfg = EvalCfg()

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
        if not path.exists():
            raise DataError(f"{path}: no such recipe")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise DataError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(data, dict):
            raise DataError(f"{path}:1: a recipe is a mapping of settings")
    for key, value in (overrides or {}).items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        line = _line_of(path, loc.split(".")[-1]) if path else None
        where = f"{path}:{line}" if line else str(path or "config")
        raise DataError(f"{where}: {loc}: {err['msg']}") from None
    from spar.train import TrainSettings

    for section in ("train_actor", "train_refiner", "bootstrap.train"):
        try:
            node = cfg
            for part in section.split("."):
                node = getattr(node, part)
            TrainSettings.from_dict(node.model_dump())
        except (ValueError, TypeError) as e:
            raise DataError(f"{path or 'config'}: {section}: {e}") from None
    return cfg


def _line_of(path: Path, key: str) -> int | None:
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip().startswith(f"{key}:"):
            return i
    return None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
