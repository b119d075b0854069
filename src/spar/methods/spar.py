"""SPaR: the actor samples, the refiner judges, failed answers are refined by tree search, and the
(failed, refined) pairs train the actor by DPO while the refinements and judgments train the
refiner. Iteration 0 may bootstrap the refiner (``bootstrap:``, ``spar.selfplay.bootstrap``)."""

from __future__ import annotations

from dataclasses import replace

from spar import stages as S
from spar.io import read_jsonl, write_jsonl
from spar.methods.common import JUDGE, NEGATIVES, PROMPTS, SAMPLE, eval_stages, train_stage
from spar.methods.base import Context, Method, Stage
from spar.progress import console

BOOTSTRAP_SEED = 7919  # the bootstrap's prompts and samples are apart from the training prompts'


def _booting(cfg, t: int) -> bool:
    return cfg.bootstrap.refiner != "none"


def _bootstrap_sample(ctx: Context) -> None:
    from spar.constraints.procedural import build_prompts

    c, b = ctx.cfg, ctx.cfg.bootstrap
    seed = c.seed + BOOTSTRAP_SEED
    prompts = build_prompts(b.prompts, "train", seed, c.prompts.min_constraints, c.prompts.max_constraints)
    S.run_sample(ctx.backend("actor"), c.sample.but(k=b.k), prompts, ctx.path("bootstrap_samples.jsonl"), seed,
                 chunk=ctx.chunk, show=ctx.show)


def _bootstrap_data(ctx: Context) -> None:
    from spar.selfplay import bootstrap as B
    from spar.types import Completion

    c, b = ctx.cfg, ctx.cfg.bootstrap
    seed = c.seed + BOOTSTRAP_SEED
    rows = read_jsonl(ctx.path("bootstrap_samples.jsonl"), Completion)
    if b.refiner == "teacher":
        out = B.teacher_rows(ctx.backend_for(b.teacher), rows, c.judge.but(mode="hybrid"),
                             c.search.but(budget=b.budget), seed)
    else:
        train, _ = B.offline_examples(rows, B.BootstrapConfig(per_answer=b.per_answer, extra=b.extra, judgments=b.judgments,
                                                              whole_fixes=b.whole_fixes, findings=b.findings, eval_share=0.0,
                                                              seed=seed))
        out = B.sft_rows(train, b.judgments, fmt=c.search.refine_format)
    write_jsonl(ctx.path("bootstrap.jsonl"), out)
    ctx.spend["rows"] = len(out)


def _search(ctx: Context) -> None:
    trees = S.run_search(ctx.backend("refiner"), ctx.cfg.judge, ctx.cfg.search, ctx.path("negatives.jsonl"),
                         ctx.path("trees.jsonl"), ctx.seed, chunk=max(8, ctx.chunk * 4), show=ctx.show, counts=ctx.spend,
                         stop=ctx.budget.exhausted)
    if ctx.budget.limit is not None:
        ctx.spend["trees_searched"] = len(trees)


def _data(ctx: Context) -> None:
    st = S.run_data(ctx.cfg.search, ctx.cfg.rft, ctx.path("prompts.jsonl"), ctx.path("trees.jsonl"),
                    ctx.path("judgments.jsonl"), ctx.path("dpo.jsonl"), ctx.path("rft.jsonl"), ctx.path("stats.json"),
                    ctx.seed)
    k = f"iter_{ctx.t}"
    ctx.spend.update(pairs=st["pairs"], solved=st["solved"], trees=st["trees"])
    ctx.summary.update({f"{k}.trees": st["trees"], f"{k}.solved": st["solved"], f"{k}.pairs": st["pairs"]})
    if ctx.show:
        console.print(f"trees solved {st['solved']}/{st['trees']} · DPO pairs {st['pairs']} "
                      f"({st['pairs_dropped']} dropped by the guard) · mean expanded per solved tree "
                      f"{st['mean_expanded_solved']}")


# The bootstrap's settings: its own section, and the sampling, judge and search it borrows.
BOOT_SETTINGS = ("bootstrap", "sample", "prompts.min_constraints", "prompts.max_constraints")

METHOD = Method(
    name="spar",
    roles=("actor", "refiner"),
    start=(("refiner", "refiner"),),  # the recipe's `refiner:` (e.g. a bootstrapped adapter) starts the refiner
    prologue=(
        PROMPTS,
        *eval_stages(),
        Stage("bootstrap_sample", _bootstrap_sample, outputs=("bootstrap_samples.jsonl",), settings=BOOT_SETTINGS,
              models=("actor",), resumable=True, when=_booting, group="bootstrap"),
        Stage("bootstrap_data", _bootstrap_data, inputs=("bootstrap_samples.jsonl",), outputs=("bootstrap.jsonl",),
              settings=(*BOOT_SETTINGS, "judge", "search"), when=_booting, group="bootstrap"),
        replace(train_stage("train_refiner", "sft", "refiner", "bootstrap.jsonl", "bootstrap.train", "refiner"),
                when=_booting, group="bootstrap"),
    ),
    stages=(
        SAMPLE,
        JUDGE,
        NEGATIVES,
        Stage("search", _search, inputs=("negatives.jsonl",), outputs=("trees.jsonl",), settings=("search", "judge"),
              models=("refiner",), resumable=True),
        Stage("data", _data, inputs=("prompts.jsonl", "trees.jsonl", "judgments.jsonl"),
              outputs=("dpo.jsonl", "rft.jsonl", "stats.json"), settings=("search", "rft")),
        train_stage("train_actor", "dpo", "actor", "dpo.jsonl", "train_actor", "actor"),
        train_stage("train_refiner", "sft", "refiner", "rft.jsonl", "train_refiner", "refiner"),
        *eval_stages(),
    ),
)
