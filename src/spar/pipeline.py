"""The self-play loop as stages over files, with a manifest.

Each stage reads files and writes files under the run directory (layout in DESIGN.md). Its
*input hash* covers its config section, the content of its input files, and the identity of the
models it uses; ``manifest.json`` records, per stage, the hash, status, seconds, versions and seed.
A rerun skips a stage that is done with the same hash, resumes a stage that was started with the
same hash (row by row), and redoes a stage whose hash changed, so changing a setting reruns only
the stages it reaches.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spar.config import RunConfig, dump_config
from spar.io import read_jsonl, read_prompts, write_jsonl, write_text
from spar.llm import Backend, BackendOptions, Sampling, load_backend
from spar.progress import console
from spar.types import JudgedSample, Negative, Prompt, Tree

STAGES = ("prompts", "bootstrap", "sample", "judge", "negatives", "search", "data", "train_actor", "train_refiner", "eval")
BackendFactory = Callable[..., Backend]  # (model, batch_size, dtype=...) -> Backend


def default_factory(model: str, batch_size: int, dtype: str | None = None) -> Backend:
    return load_backend(model, BackendOptions(batch_size=batch_size, dtype=dtype))


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("spar-lm", "torch", "transformers", "trl", "peft"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


class StageFailed(RuntimeError):
    pass


class Run:
    def __init__(self, cfg: RunConfig, run_dir: str | Path, factory: BackendFactory = default_factory,
                 until: str | None = None, show: bool = True):
        if until is not None and until not in STAGES:
            raise ValueError(f"--until must be one of {', '.join(STAGES)}")
        self.cfg, self.dir, self.factory, self.until, self.show = cfg, Path(run_dir), factory, until, show
        self.dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.dir / "manifest.json"
        self.manifest: dict[str, Any] = (json.loads(self.manifest_path.read_text()) if self.manifest_path.exists()
                                         else {"stages": {}})
        self._backends: dict[str, Backend] = {}
        self.summary: dict[str, Any] = {}

    # -- bookkeeping ---------------------------------------------------------------------------

    def _save_manifest(self) -> None:
        self.manifest["versions"] = _versions()
        write_text(self.manifest_path, json.dumps(self.manifest, indent=1) + "\n")

    def _fingerprint(self, x: Any) -> Any:
        if isinstance(x, Path):
            if x.is_dir():  # a trained model of this run: identified by the stage that made it
                try:
                    rel = str(x.resolve().parent.relative_to(self.dir.resolve())).replace("/", ":")
                except ValueError:
                    return str(x)
                rec = self.manifest["stages"].get(rel + "_model")
                return rec["hash"] if rec else str(x)
            return file_hash(x) if x.exists() else None
        return x

    def stage(self, key: str, inputs: dict[str, Any], outputs: list[Path], fn: Callable[[], Any],
              resumable: bool = False) -> bool:
        """Run ``fn`` unless done with the same input hash. Returns True if it ran."""
        from spar import __version__

        # A new spar, or another inference dtype, may write different files.
        inputs = {**inputs, "spar": __version__, "dtype": self.cfg.dtype}
        h = hashlib.sha256(json.dumps({k: self._fingerprint(v) for k, v in inputs.items()}, sort_keys=True,
                                      default=str).encode()).hexdigest()[:16]
        rec = self.manifest["stages"].get(key)
        if rec and rec["hash"] == h and rec["status"] == "done" and all(o.exists() for o in outputs):
            if self.show:
                console.print(f"[dim]✓ {key} (done, inputs unchanged)[/dim]")
            return False
        if not (rec and rec["hash"] == h and resumable):  # stale or not resumable: start clean
            for o in outputs:
                shutil.rmtree(o, ignore_errors=True) if o.is_dir() else o.unlink(missing_ok=True)
        self.manifest["stages"][key] = {"hash": h, "status": "running", "seed": self.cfg.seed,
                                        "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self._save_manifest()
        if self.show:
            console.rule(f"[bold]{key}")
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as e:
            self.manifest["stages"][key].update(status="failed", error=f"{type(e).__name__}: {e}")
            self._save_manifest()
            raise StageFailed(f"stage {key} failed ({type(e).__name__}: {e}); fix it and rerun the same "
                              "command to continue from there") from e
        self.manifest["stages"][key].update(status="done", seconds=round(time.perf_counter() - t0, 1))
        self._save_manifest()
        return True

    def backend(self, model: str) -> Backend:
        if model not in self._backends:
            extra = {"dtype": self.cfg.dtype} if self.cfg.dtype else {}
            self._backends[model] = self.factory(model, self.cfg.batch_size, **extra)
        return self._backends[model]

    def _stop(self, stage: str) -> bool:
        return self.until is not None and STAGES.index(stage) > STAGES.index(self.until)

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        write_text(self.dir / "config.yaml", dump_config(self.cfg))
        self.prompts_stage()
        actor = self.cfg.model
        refiner = self.cfg.refiner or self.cfg.model
        if self.cfg.eval.heldout or self.cfg.eval.ifeval_data:
            if not self._stop("eval"):
                self.eval_stage(0, actor)
        if self.cfg.bootstrap.refiner != "none" and not self._stop("bootstrap"):
            refiner = self.bootstrap_stage(actor, refiner)
        for t in range(1, self.cfg.iterations + 1):
            actor, refiner = self.iteration(t, actor, refiner)
            if self._stop("sample"):
                break
        from spar.report import write_report

        write_report(self.dir)
        return self.summary

    def prompts_stage(self) -> None:
        from spar.constraints.procedural import build_prompts

        c = self.cfg.prompts
        train, held = self.dir / "prompts.jsonl", self.dir / "heldout.jsonl"

        def go() -> None:
            if c.source == "file":
                if not c.path:
                    raise ValueError("prompts.source=file needs prompts.path")
                rows = read_prompts(c.path)[: c.count]
            else:
                rows = build_prompts(c.count, "train", self.cfg.seed, c.min_constraints, c.max_constraints)
            write_jsonl(train, rows)
            write_jsonl(held, build_prompts(c.heldout, "heldout", self.cfg.seed, c.min_constraints, c.max_constraints)
                        if c.heldout else [])

        inputs = {"cfg": c.model_dump(), "seed": self.cfg.seed, "file": Path(c.path) if c.path else None}
        self.stage("prompts", inputs, [train, held], go)

    def bootstrap_stage(self, actor: str, refiner: str) -> str:
        """Iteration 0: answers to prompts of its own, broken and restored (or refined by a teacher),
        as SFT data for the refiner; returns the bootstrapped refiner."""
        from spar.generate import generate_file
        from spar.selfplay import bootstrap as B
        from spar.types import Completion

        c, b, d = self.cfg, self.cfg.bootstrap, self.dir / "iter_0"
        seed = c.seed + 7919  # prompts and samples apart from the training prompts'
        samples, data = d / "bootstrap_samples.jsonl", d / "bootstrap.jsonl"
        s = c.sample

        def sample() -> None:
            from spar.constraints.procedural import build_prompts

            prompts = build_prompts(b.prompts, "train", seed, c.prompts.min_constraints, c.prompts.max_constraints)
            generate_file(self.backend(actor), prompts, samples, Sampling(n=b.k, temperature=s.temperature, top_p=s.top_p,
                                                                            max_new_tokens=s.max_new_tokens, seed=seed),
                          chunk=c.batch_size, show=self.show)

        self.stage("iter_0:bootstrap_sample", {"actor": self._model_id(actor), "cfg": b.model_dump(exclude={"train"}),
                                               "sample": s.model_dump(), "seed": seed}, [samples], sample, resumable=True)

        def build() -> None:
            rows = read_jsonl(samples, Completion)
            if b.refiner == "teacher":
                from spar.roles.judge import JudgeConfig
                from spar.search.driver import RefineSampling
                from spar.search.strategies import SearchConfig

                sc = c.search
                out = B.teacher_rows(self.backend(b.teacher), rows,
                                     JudgeConfig(votes=c.judge.votes, mode="hybrid", max_new_tokens=c.judge.max_new_tokens, seed=seed),
                                     SearchConfig(strategy=sc.strategy, budget=b.budget, guard=sc.guard_config()),
                                     RefineSampling(temperature=sc.temperature, max_new_tokens=sc.max_new_tokens, seed=seed), seed)
            else:
                train, _ = B.offline_examples(rows, B.BootstrapConfig(per_answer=b.per_answer, extra=b.extra, eval_share=0.0,
                                                                      seed=seed))
                out = B.sft_rows(train)
            write_jsonl(data, out)

        self.stage("iter_0:bootstrap_data", {"samples": samples, "cfg": b.model_dump(exclude={"train"}),
                                             "guard": c.search.guard_config(), "seed": seed}, [data], build)
        return self._train("iter_0:train_refiner", "sft", refiner, data, d / "refiner", b.train.model_dump())

    def iteration(self, t: int, actor: str, refiner: str) -> tuple[str, str]:
        from spar.generate import generate_file
        from spar.roles.judge import JudgeConfig
        from spar.roles.stage import judge_file
        from spar.search.driver import RefineSampling, Searcher
        from spar.search.stage import search_file
        from spar.search.strategies import SearchConfig
        from spar.selfplay.data import RFTConfig, dpo_pairs, rft_examples, search_stats
        from spar.selfplay.negatives import NegativeConfig, pick_negatives

        c, d = self.cfg, self.dir / f"iter_{t}"
        seed = c.seed + 1000 * t
        prompts_path = self.dir / "prompts.jsonl"
        samples, judgments, negatives = d / "samples.jsonl", d / "judgments.jsonl", d / "negatives.jsonl"
        trees, dpo, rft, stats = d / "trees.jsonl", d / "dpo.jsonl", d / "rft.jsonl", d / "stats.json"
        jcfg = JudgeConfig(votes=c.judge.votes, mode=c.judge.mode, temperature=c.judge.temperature,
                           max_new_tokens=c.judge.max_new_tokens, seed=seed)
        k = f"iter_{t}"

        s = c.sample
        self.stage(f"{k}:sample", {"prompts": prompts_path, "actor": self._model_id(actor), "cfg": s.model_dump(), "seed": seed},
                   [samples], lambda: generate_file(self.backend(actor), read_prompts(prompts_path), samples,
                                                    Sampling(n=s.k, temperature=s.temperature, top_p=s.top_p,
                                                             max_new_tokens=s.max_new_tokens, seed=seed),
                                                    chunk=c.batch_size, show=self.show), resumable=True)
        if self._stop("judge"):
            return actor, refiner
        judge_backend = None if c.judge.mode == "verifier" else refiner
        self.stage(f"{k}:judge", {"samples": samples, "refiner": self._model_id(refiner), "cfg": c.judge.model_dump(), "seed": seed},
                   [judgments], lambda: judge_file(judge_backend and self.backend(judge_backend), samples, judgments, jcfg,
                                                   chunk=c.batch_size, show=self.show), resumable=True)
        if self._stop("negatives"):
            return actor, refiner
        self.stage(f"{k}:negatives", {"judgments": judgments, "prompts": prompts_path, "cfg": c.negatives.model_dump(), "seed": seed},
                   [negatives], lambda: write_jsonl(negatives, pick_negatives(
                       read_prompts(prompts_path), read_jsonl(judgments, JudgedSample),
                       NegativeConfig(per_prompt=c.negatives.per_prompt, seed=seed))))
        self.summary[f"{k}.negatives"] = len(read_jsonl(negatives, Negative))
        if self._stop("search"):
            return actor, refiner
        sc = c.search
        searcher_cfg = SearchConfig(strategy=sc.strategy, branch=sc.branch, select=sc.select, depth=sc.depth, budget=sc.budget,
                                    guard=sc.guard_config())
        self.stage(f"{k}:search", {"negatives": negatives, "refiner": self._model_id(refiner), "cfg": sc.model_dump(),
                                   "judge": c.judge.model_dump(), "seed": seed},
                   [trees], lambda: search_file(Searcher(
                       self.backend(refiner), jcfg, searcher_cfg,
                       RefineSampling(temperature=sc.temperature, max_new_tokens=sc.max_new_tokens, seed=seed, prefill=sc.prefill)),
                       negatives, trees, chunk=max(8, c.batch_size * 4), show=self.show), resumable=True)
        if self._stop("data"):
            return actor, refiner

        def build() -> None:
            prompts = {p.id: p for p in read_prompts(prompts_path)}
            tr, judged = read_jsonl(trees, Tree), read_jsonl(judgments, JudgedSample)
            pairs, dropped = dpo_pairs(tr, prompts, sc.guard_config())
            write_jsonl(dpo, pairs)
            write_jsonl(rft, rft_examples(tr, judged, prompts, RFTConfig(c.rft.balance, c.rft.refinement_share, seed), pairs))
            write_text(stats, json.dumps(search_stats(tr, judged, pairs, dropped).as_dict(), indent=1) + "\n")

        self.stage(f"{k}:data", {"trees": trees, "judgments": judgments, "prompts": prompts_path, "cfg": c.rft.model_dump(),
                                 "guard": sc.guard_config(), "seed": seed}, [dpo, rft, stats], build)
        st = json.loads(stats.read_text())
        self.summary.update({f"{k}.trees": st["trees"], f"{k}.solved": st["solved"],
                             f"{k}.pairs": len(dpo.read_text().splitlines())})
        if self.show:
            console.print(f"negatives {self.summary[f'{k}.negatives']} · trees solved {st['solved']}/{st['trees']} · "
                          f"DPO pairs {self.summary[f'{k}.pairs']} · mean expanded per solved tree {st['mean_expanded_solved']}")
        if self._stop("train_actor"):
            return actor, refiner
        new_actor = self._train(f"{k}:train_actor", "dpo", actor, dpo, d / "actor", c.train_actor.model_dump())
        if self._stop("train_refiner"):
            return new_actor, refiner
        new_refiner = self._train(f"{k}:train_refiner", "sft", refiner, rft, d / "refiner", c.train_refiner.model_dump())
        if not self._stop("eval"):
            self.eval_stage(t, new_actor)
        return new_actor, new_refiner

    def _model_id(self, model: str) -> Any:
        return self._fingerprint(Path(model)) if Path(model).is_dir() else model

    def _train(self, key: str, kind: str, base: str, data: Path, out: Path, settings: dict) -> str:
        from spar.train import TrainSettings, train_dpo, train_sft

        rows = [json.loads(x) for x in data.read_text().splitlines() if x.strip()]
        if not rows:  # nothing to learn from: the model goes on unchanged
            console.print(f"[yellow]{key}: no training rows; the model is kept as it is[/yellow]")
            return base
        s = TrainSettings.from_dict({**settings, "seed": self.cfg.seed, "merge_lora": True})

        def go() -> None:
            _, log = (train_dpo if kind == "dpo" else train_sft)(str(self._path_of(base)), rows, out, s)
            losses = [x["loss"] for x in log if "loss" in x]
            self.manifest["stages"][key]["loss"] = losses
            if kind == "dpo" and self.show:
                console.print(f"DPO loss per step: {', '.join(f'{v:.4f}' for v in losses)}")

        self.stage(key, {"data": data, "base": self._model_id(base), "settings": settings, "seed": self.cfg.seed},
                   [out / "model"], go)
        self.manifest["stages"][key.replace("train_actor", "actor_model").replace("train_refiner", "refiner_model")] = \
            {"hash": self.manifest["stages"][key]["hash"], "status": "done"}
        self._save_manifest()
        return str(out / "model")

    def _path_of(self, model: str) -> str:
        if model == "embedded":
            from spar.llm.embedded import embedded_model_path

            return str(embedded_model_path())
        return model

    def eval_stage(self, t: int, actor: str) -> None:
        from spar.eval.ifeval import outcome_rows, score
        from spar.generate import generate_file

        e, d = self.cfg.eval, self.dir / f"iter_{t}" / "eval"
        sampling = Sampling(max_new_tokens=e.max_new_tokens)
        jobs = []
        if e.heldout and self.cfg.prompts.heldout:
            jobs.append(("heldout", self.dir / "heldout.jsonl", None))
        if e.ifeval_data:
            jobs.append(("ifeval", Path(e.ifeval_data), e.ifeval_limit))
        for name, src, limit in jobs:
            out, resp, outcomes = d / f"{name}.json", d / f"{name}.responses.jsonl", d / f"{name}.outcomes.jsonl"

            def go(src=src, limit=limit, out=out, resp=resp, outcomes=outcomes, name=name) -> None:
                prompts: list[Prompt] = read_prompts(src)[:limit] if limit else read_prompts(src)
                rows = generate_file(self.backend(actor), prompts, resp, sampling, chunk=self.cfg.batch_size * 2,
                                     show=self.show)
                sc, per_prompt = score(prompts, {r.id: r.completions[0] for r in rows})
                write_jsonl(outcomes, outcome_rows(per_prompt))
                write_text(out, json.dumps({"benchmark": name, "model": actor, "iteration": t, **sc.as_dict()}, indent=1) + "\n")

            self.stage(f"iter_{t}:eval:{name}", {"data": src, "limit": limit, "actor": self._model_id(actor),
                                                 "max_new_tokens": e.max_new_tokens}, [out, resp, outcomes], go, resumable=True)
