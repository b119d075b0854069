"""The run configuration: one typed section per stage (the classes of ``spar.settings``), validated
on load. YAML recipes give values, the command line overrides them, and the resolved config (every
default written out) is saved in the run directory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from spar.registry import MethodName
from spar.settings import (AutoIFSettings, BootstrapSettings, BudgetSettings, EngineSettings, EvalSettings, ExecutorSettings, LauncherSettings, JudgeSettings, NegativesSettings, PromptsSettings,
                           RemoteSettings, RewardSettings, RFTSettings, RLVRSettings, SampleSettings, SearchSettings, SelfSettings, Settings,
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
    method: MethodName = "spar"  # spar.methods.REGISTRY
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
    rlvr: RLVRSettings = RLVRSettings()
    budget: BudgetSettings = BudgetSettings()  # generated tokens per iteration, each method spending its own way
    autoif: AutoIFSettings = AutoIFSettings()
    eval: EvalSettings = EvalSettings()
    engine: EngineSettings = EngineSettings()  # vLLM's engine settings (vllm:... models)
    remote: RemoteSettings = RemoteSettings()  # requests to openai: models (spar --timeout/--retries)
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
        # the run directory is runs/<name>: ".." or "a/b" would put it elsewhere (".." is the current
        # directory itself, whose files a run would overwrite)
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}", v):
            raise ValueError(f"name must be a plain folder name (letters, digits, . _ + -, not starting with '.' or '-'), got {v!r}")
        return v


MAX_RECIPE = 1 << 20  # bytes: a recipe is a page of settings


class StrictLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping (plain YAML keeps the last,
    silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice (first on line {seen[key]})", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: the base loader says so
                break
        return super().construct_mapping(node, deep=deep)


def shipped(path: str | Path | None) -> Path | None:
    """A recipe or accelerate config by the name it has in the package, for users outside a checkout:
    ``llama3-8b/spar``, ``smollm2-135m/demo.yaml``, ``recipes/accelerate/zero3.yaml`` and ``accelerate/zero3``
    all name shipped files. A path that exists here wins; anything else comes back unchanged (its
    check then says it is missing)."""
    if path is None:
        return None
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    from importlib.resources import files

    root = Path(str(files("spar") / "recipes"))
    rel = Path(*path.parts[1:]) if path.parts and path.parts[0] == "recipes" else path
    for candidate in (root / rel, root / rel.with_name(rel.name + ".yaml")):
        if candidate.is_file():
            return candidate
    return path


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML recipe (or defaults), apply dotted overrides (``{"search.budget": 6}``), validate."""
    from spar.io import DataError

    data: dict[str, Any] = {}
    if path is not None:
        from spar.io import check_input

        path = shipped(path)
        if not path.exists():
            raise DataError(f"{path}: no such recipe")
        if path.is_dir():
            raise DataError(f"{path}: a recipe is a YAML file, not a directory")
        check_input(path, file=True)
        raw = path.read_bytes()[:MAX_RECIPE + 1]
        if len(raw) > MAX_RECIPE:
            raise DataError(f"{path}: larger than {MAX_RECIPE >> 10} KiB; not a recipe")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[:e.start].count(b"\n") + 1
            raise DataError(f"{path}:{line}: not UTF-8 text") from None
        try:
            data = yaml.load(text, Loader=StrictLoader) or {}
        except RecursionError:
            raise DataError(f"{path}: YAML nested too deep") from None
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


def check_recipe(cfg: RunConfig, config: Path | None) -> None:
    """What a recipe names, checked before its run starts: the files it reads (a missing one is bad
    input now, not a failed stage an hour in) and its model strings, without loading a model."""
    from spar.io import DataError, check_input
    from spar.llm import BackendOptions, BackendError, check_model

    where = f"{config}: " if config else ""
    files = {"prompts.path": cfg.prompts.path if cfg.prompts.source == "file" else None,
             "eval.ifeval_data": cfg.eval.ifeval_data, "eval.llmbar_data": cfg.eval.llmbar_data,
             "eval.followbench_data": cfg.eval.followbench_data, "launcher.config_file": shipped(cfg.launcher.config_file)}
    for key, value in files.items():
        if value:
            try:
                check_input(value)
            except DataError as e:
                raise DataError(f"{where}{key}: {e}") from None
    models = {"model": cfg.model, "refiner": cfg.refiner,
              "bootstrap.teacher": cfg.bootstrap.teacher if cfg.bootstrap.refiner == "teacher" else None,
              "autoif.teacher": cfg.autoif.teacher if cfg.method == "autoif" else None}
    for key, value in models.items():
        if value:
            try:
                check_model(value, BackendOptions(dtype=cfg.dtype))
            except BackendError as e:
                raise DataError(f"{where}{key}: {e}") from None
