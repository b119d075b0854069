"""What a method is made of: :class:`Stage` records, grouped into a :class:`Method`, and the
:class:`Context` a stage's ``run`` is given by the loop (``spar.pipeline``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spar.config import RunConfig
from spar.io import DataError
from spar.llm import Backend


@dataclass(frozen=True)
class Stage:
    """One stage of a method: what it is called, what it reads and writes, which recipe sections and
    models it depends on. ``run(ctx)`` does the work; a training stage returns the path of the model
    it wrote (or None when it had no rows and the model stays as it was)."""

    name: str  # what --until takes; the manifest key is "iter_<t>:<name>" (iteration 0: the prologue)
    run: Callable[[Context], Any]
    inputs: tuple[str, ...] = ()  # file names (RUN_FILES or the iteration's), or "cfg:<key>" for a path in the recipe
    outputs: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()  # RunConfig sections (dotted) hashed with it
    models: tuple[str, ...] = ()  # roles whose current model it depends on ("actor", "refiner"), hashed
    loads: tuple[str, ...] | None = None  # roles it loads through a backend (default: models; training loads none)
    trains: str | None = None  # the role whose new model it writes
    resumable: bool = False  # appends rows and resumes
    when: Callable[[Any, int], bool] | None = None  # (config, iteration): skip the stage unless this holds
    group: str | None = None  # --until name shared by several stages (eval:heldout, eval:ifeval -> eval)
    run_level: bool = False  # its manifest key has no iteration (the prompts)

    @property
    def loaded(self) -> tuple[str, ...]:
        return self.models if self.loads is None else self.loads

    @property
    def until_name(self) -> str:
        return self.group or self.name


@dataclass(frozen=True)
class Method:
    name: str
    prologue: tuple[Stage, ...]  # iteration 0, once
    stages: tuple[Stage, ...]  # every iteration t = 1..iterations
    roles: tuple[str, ...] = ("actor",)  # the models it keeps; any other role is the actor's model
    # role -> the recipe field naming its starting model where that is not `model` (SPaR: refiner)
    start: tuple[tuple[str, str], ...] = ()

    def starting_models(self, cfg: RunConfig) -> dict[str, str]:
        """Each role's model before training: the recipe's ``model``, or the field ``start`` names
        for the role where the recipe sets it."""
        fields = dict(self.start)
        return {role: (cfg.at(fields[role]) if role in fields else None) or cfg.model for role in self.roles}

    def stage_names(self) -> list[str]:
        out: list[str] = []
        for s in (*self.prologue, *self.stages):
            if s.until_name not in out:
                out.append(s.until_name)
        return out


class Budget:
    """An iteration's generated-token budget (``budget.generated_tokens``) as a stage sees it: the
    tokens the iteration's finished stages spent (from the manifest) plus what this stage has
    spent so far (``live()``). A generating stage asks :meth:`exhausted` before each chunk of rows.
    A stage killed and resumed counts only what its resumed part spends."""

    def __init__(self, limit: int | None, before: int, live: Callable[[], int]):
        self.limit, self.before, self.live = limit, before, live

    def spent(self) -> int:
        return self.before + self.live()

    def left(self) -> int | None:
        return None if self.limit is None else self.limit - self.spent()

    def exhausted(self) -> bool:
        return self.limit is not None and self.spent() >= self.limit


@dataclass
class Context:
    """What a stage's ``run`` sees, and nothing of the loop behind it: the config, the iteration and
    its seed, where its files are, which model each role is, a backend factory, and channels for
    what it reports (``spend`` into its manifest entry, ``summary`` into the run's summary)."""

    cfg: RunConfig
    t: int
    seed: int
    stage: Stage
    paths: Callable[[str, int], Path | None]  # (file name, iteration) -> path; None for a recipe file not named
    models: dict[str, str]  # role -> model string, as the loop has trained them so far
    backend_of: Callable[[str], Backend]  # model string -> a backend (loaded once per run, reused)
    records: Callable[[str], dict[str, Any]] = lambda name: {}  # manifest entry of a finished stage (same iteration)
    summary: dict[str, Any] = field(default_factory=dict)  # the run's summary figures (iter_N.pairs, ...)
    packaged_on_vllm: bool = False  # models trained from a packaged one are served with vLLM too
    show: bool = True  # progress bars
    spend: dict[str, Any] = field(default_factory=dict)  # extra figures for the manifest (counts, losses)
    budget: Budget = field(default_factory=lambda: Budget(None, 0, lambda: 0))

    def path(self, name: str) -> Path:
        p = self.paths(name, self.t)
        if p is None:
            raise DataError(f"stage {self.stage.name}: the recipe names no file for {name[4:]}")
        return p

    def model(self, role: str) -> str:
        return self.models[role if role in self.models else "actor"]

    def backend(self, role: str) -> Backend:
        """The backend of the model that plays ``role`` (the actor where the method has no such role)."""
        return self.backend_of(self.model(role))

    def backend_for(self, model: str) -> Backend:
        """The backend of a model string the recipe names (a teacher, FollowBench's judge)."""
        return self.backend_of(model)

    def record(self, stage: str) -> dict[str, Any]:
        """The manifest entry of this iteration's stage ``stage`` (empty before it ran)."""
        return self.records(stage)

    @property
    def chunk(self) -> int:
        return self.cfg.batch_size


