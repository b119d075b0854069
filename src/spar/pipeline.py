"""The loop: a method's stages over files, with a manifest. Nothing here is method-specific.

A method (``spar.methods``) is a declared list of :class:`Stage` records: a prologue that runs once
(iteration 0: the prompts, the evaluation before training, SPaR's optional bootstrap) and the
stages of one iteration. Each stage reads files and writes files under the run directory (layout
in DESIGN.md). Its *input hash* covers the recipe sections it declares, the content of its input
files, the identity of the models it uses, its seed and spar's version; ``manifest.json`` records,
per stage, the hash, status, seconds, spend (model calls, prompt and new tokens), seed, and on a
failure the traceback. A rerun skips a stage that is done with the same hash, resumes a stage
that was started with the same hash (row by row, where the stage is resumable), and redoes a stage
whose hash changed, so changing a setting reruns only the stages it reaches.

``--until NAME`` stops right after the first stage called NAME (or after stage ``iter_N:NAME``,
given that way); a model is released as soon as no later stage of the iteration needs it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from spar.config import RunConfig, dump_config
from spar.io import DataError, read_manifest, write_text
from spar.engines import BackendFactory, Engines, default_factory
from spar.llm import Backend, Metered
from spar.methods.base import Budget, Context, Method, Stage  # noqa: F401  (re-exported for methods)
from spar.progress import console

RUN_FILES = ("prompts.jsonl", "heldout.jsonl")  # in the run directory; every other file is per iteration


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _versions() -> dict[str, str]:
    from spar.machine import describe
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "machine": describe()}
    for pkg in ("spar-lm", "torch", "transformers", "trl", "peft"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


class StageFailed(RuntimeError):
    def __init__(self, key: str, error: BaseException):
        super().__init__(f"stage {key} failed ({type(error).__name__}: {error}); fix it and rerun the same command "
                         "to continue from there")
        self.key, self.error = key, error


class Run:
    def __init__(self, cfg: RunConfig, run_dir: str | Path, factory: BackendFactory = default_factory,
                 until: str | None = None, show: bool = True, method: Method | None = None):
        from spar.methods import get_method

        self.cfg, self.dir, self.factory, self.show = cfg, Path(run_dir), factory, show
        self.method = method or get_method(cfg.method)
        self.until = self._check_until(until)
        from spar.io import check_run_dir

        check_run_dir(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.dir / "manifest.json"
        self.manifest: dict[str, Any] = (read_manifest(self.manifest_path) if self.manifest_path.exists()
                                         else {"stages": {}})
        self.engines = Engines(cfg, factory)
        self.models: dict[str, str] = {}
        self._made_by: dict[str, str] = {}  # path of a model trained in this run -> hash of the stage that made it
        self.summary: dict[str, Any] = {}

    def _check_until(self, until: str | None) -> str | None:
        if until is None:
            return None
        names = self.method.stage_names()
        bare = until.split(":", 1)[1] if until.startswith("iter_") and ":" in until else until
        if bare not in names:
            raise DataError(f"--until must name a stage of method {self.method.name}: {', '.join(names)} "
                            f"(or iter_N:<stage>), got {until!r}")
        return until

    # -- paths, models, backends ---------------------------------------------------------------

    def path(self, name: str, t: int) -> Path | None:
        if name.startswith("cfg:"):  # a file the recipe names (None when it names none)
            value = self.cfg.at(name[4:])
            return Path(value) if value else None
        return self.dir / name if name in RUN_FILES else self.dir / f"iter_{t}" / name

    def role(self, role: str) -> str:
        return role if role in self.models else "actor"

    def backend(self, model: str) -> Backend:
        return self.engines.get(model)

    def release(self, keep: set[str]) -> None:
        self.engines.release(keep)

    @property
    def _backends(self) -> dict[str, Metered]:
        return self.engines.loaded

    def model_id(self, model: str) -> Any:
        """A model's identity in a hash: the hash of the stage that trained it, or its string."""
        return self._made_by.get(model, model)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _save_manifest(self) -> None:
        self.manifest["versions"] = _versions()
        write_text(self.manifest_path, json.dumps(self.manifest, indent=1) + "\n")

    @staticmethod
    def _fingerprint(x: Path | None) -> str | None:
        return file_hash(x) if x is not None and x.is_file() else None

    def _hash(self, stage: Stage, t: int, seed: int) -> str:
        from spar import __version__

        inputs: dict[str, Any] = {"spar": __version__, "dtype": self.cfg.dtype, "seed": seed, "method": self.method.name}
        for section in stage.settings:
            value = self.cfg.at(section)
            inputs[f"cfg:{section}"] = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
        for name in stage.inputs:
            inputs[f"file:{name}"] = self._fingerprint(self.path(name, t))
        for role in stage.models:
            inputs[f"model:{role}"] = self.model_id(self.models[self.role(role)])
        return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def seed_of(self, t: int) -> int:
        return self.cfg.seed + 1000 * t

    @staticmethod
    def key(stage: Stage, t: int) -> str:
        return stage.name if stage.run_level else f"iter_{t}:{stage.name}"

    def _run_stage(self, stage: Stage, t: int) -> bool:
        """Run one stage unless it is done with the same input hash; True if it ran."""
        key = self.key(stage, t)
        seed = self.seed_of(t)
        h = self._hash(stage, t, seed)
        outputs = [self.path(o, t) for o in stage.outputs]
        rec = self.manifest["stages"].get(key)
        kept_model = bool(rec and stage.trains and rec.get("model", "") is None)
        if rec and rec["hash"] == h and rec["status"] == "done" and (kept_model or all(o.exists() for o in outputs)):
            if self.show:
                console.print(f"[dim]✓ {key} (done, inputs unchanged)[/dim]")
            if stage.trains:
                self._adopt(stage.trains, rec.get("model"), h)
            return False
        if not (rec and rec["hash"] == h and stage.resumable):  # stale or not resumable: start clean
            for o in outputs:
                shutil.rmtree(o, ignore_errors=True) if o.is_dir() else o.unlink(missing_ok=True)
        for o in outputs:
            o.parent.mkdir(parents=True, exist_ok=True)
        entry = {"hash": h, "status": "running", "seed": self.cfg.seed, "stage_seed": seed, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.manifest["stages"][key] = entry
        self._save_manifest()
        if self.show:
            console.rule(f"[bold]{key}")
        before = self.engines.spent()
        budget = Budget(self.cfg.budget.generated_tokens, self._iteration_tokens(t, key),
                        lambda: self.engines.since(before)["new_tokens"])
        stages = self.manifest["stages"]
        ctx = Context(self.cfg, t, seed, stage, paths=self.path, models=dict(self.models), backend_of=self.backend,
                      records=lambda name: stages.get(f"iter_{t}:{name}", {}), summary=self.summary,
                      packaged_on_vllm=self.engines.packaged_on_vllm, show=self.show, budget=budget)
        t0 = time.perf_counter()
        try:
            result = stage.run(ctx)
        except Exception as e:
            entry.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
            self._save_manifest()
            raise StageFailed(key, e) from e
        entry.update(status="done", seconds=round(time.perf_counter() - t0, 1), spend=self.engines.since(before),
                     **ctx.spend)
        if self.cfg.budget.generated_tokens is not None and not stage.run_level:
            self.manifest.setdefault("budget", {})[f"iter_{t}"] = {
                "generated_tokens": self.cfg.budget.generated_tokens, "spent": self._iteration_tokens(t)}
        if stage.trains:
            entry["model"] = result
            self._adopt(stage.trains, result, h)
        self._save_manifest()
        return True

    def _adopt(self, role: str, model: str | None, h: str) -> None:
        if model is None:  # nothing to learn from: the model goes on unchanged
            console.print(f"[yellow]{role}: no training rows; the model is kept as it is[/yellow]")
            return
        self.models[role] = model
        self._made_by[model] = h

    def _iteration_tokens(self, t: int, but: str | None = None) -> int:
        """Tokens iteration ``t``'s finished stages generated (evaluations not counted), but stage ``but``."""
        total = 0
        for key, rec in self.manifest["stages"].items():
            if key.startswith(f"iter_{t}:") and not key.startswith(f"iter_{t}:eval") and key != but \
                    and rec.get("status") == "done":
                total += (rec.get("spend") or {}).get("new_tokens", 0) + (rec.get("generated_tokens") or 0)
        return total

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self._save_manifest()  # first: a folder with a manifest is a run's (spar.io.check_run_dir)
        write_text(self.dir / "config.yaml", dump_config(self.cfg))
        self.models = self.method.starting_models(self.cfg)
        schedule = [(0, s) for s in self.method.prologue]
        schedule += [(t, s) for t in range(1, self.cfg.iterations + 1) for s in self.method.stages]
        schedule = [(t, s) for t, s in schedule if s.when is None or s.when(self.cfg, t)]
        if self.until and not any(self._hit(t, s) for t, s in schedule):
            raise DataError(f"--until {self.until}: no such stage runs with this recipe and --iterations "
                            "(an optional stage that is switched off, or an iteration beyond the last)")
        for i, (t, stage) in enumerate(schedule):
            self._run_stage(stage, t)
            self.release(self._needed([s for tt, s in schedule[i + 1:] if tt == t]))
            if self._stops_after(schedule, i):
                break
        self.release(set())
        from spar.report import write_report

        write_report(self.dir)
        return self.summary

    def _needed(self, later: list[Stage]) -> set[str]:
        """The models the later stages of this iteration will load (a role that a stage before them
        retrains will be another model by then)."""
        keep: set[str] = set()
        retrained: set[str] = set()
        for s in later:
            keep |= {self.models[self.role(r)] for r in s.loaded if self.role(r) not in retrained}
            if s.trains:
                retrained.add(self.role(s.trains))
        return keep

    def _hit(self, t: int, stage: Stage) -> bool:
        if self.until is None:
            return False
        if self.until.startswith("iter_") and ":" in self.until:
            return f"iter_{t}:{stage.until_name}" == self.until
        return stage.until_name == self.until

    def _stops_after(self, schedule: list[tuple[int, Stage]], i: int) -> bool:
        if self.until is None:
            return False
        t, stage = schedule[i]
        if not self._hit(t, stage):
            return False
        nxt = schedule[i + 1] if i + 1 < len(schedule) else None  # a group ends with its last stage
        return nxt is None or nxt[0] != t or nxt[1].until_name != stage.until_name
