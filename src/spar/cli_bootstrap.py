"""``spar bootstrap``: teach the refiner to edit before self-play."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from spar.cli_common import JUDGE, SEARCH, DtypeOpt, ModelOpt, _backend, friendly, IN, OUT
from spar.io import DataError
from spar.settings import BootstrapSettings, JudgeSettings

BOOT = BootstrapSettings()

bootstrap_app = typer.Typer(help="Teach the refiner to edit before self-play: data from broken-and-restored answers or a teacher.",
                            no_args_is_help=True)


def _check_format(fmt: str) -> None:
    from spar.roles.templates import REFINE_FORMATS

    if fmt not in REFINE_FORMATS:
        raise DataError(f"--refine-format {fmt!r}: choose {' or '.join(REFINE_FORMATS)}")


def _kinds(text: str | None) -> tuple[str, ...]:
    return tuple(k.strip() for k in (text or "").split(",") if k.strip())


@bootstrap_app.command("refiner")
@friendly
def bootstrap_refiner(
    input: Annotated[Path, typer.Option("--input", "-i", help="samples JSONL from `spar generate` (a run's iter_1/samples.jsonl will do)"), IN],
    out: Annotated[Path, typer.Option("--out", "-o", help="refiner SFT rows ({messages, origin}) for `spar train sft`"), OUT],
    eval_out: Annotated[Optional[Path], typer.Option(help="held-out breaks as negatives, for `spar bootstrap eval`"), OUT] = None,
    pairs_out: Annotated[Optional[Path], typer.Option(help="also refiner preference pairs for `spar train dpo` (chosen: the restoring edit, rejected: the answer handed back unchanged)"), OUT] = None,
    pairs_rejected: Annotated[str, typer.Option(help="with --pairs-out, the rejected reply: copy (the answer handed back unchanged), echo (the restoring edit plus a sentence of the judge prompt), mixed (copy and echo by turns)")] = "copy",
    heldout_kinds: Annotated[Optional[str], typer.Option(help="comma-separated constraint kinds never broken in training data (their breaks go to --eval-out)")] = None,
    kinds: Annotated[Optional[str], typer.Option(help="comma-separated constraint kinds: only these are added to prompts and broken (default: every kind with a breaker)")] = None,
    whole_fixes: Annotated[bool, typer.Option("--whole-fixes/--no-whole-fixes", help="also teach a fixer's whole edit (the answer before a fixer made it meet an added constraint -> after), e.g. a block of text -> paragraphs")] = BOOT.whole_fixes,
    eval_share: Annotated[float, typer.Option(min=0.0, max=1.0, help="share of prompts whose breaks go to --eval-out")] = BOOT.eval_share,
    per_answer: Annotated[int, typer.Option(min=1, help="broken copies per answer, each breaking another constraint")] = BOOT.per_answer,
    extra: Annotated[int, typer.Option(help="constraints an answer happens to meet, added to its prompt")] = BOOT.extra,
    findings: Annotated[bool, typer.Option("--findings/--no-findings", help="the broken answer's checklist says what it has (found 2 paragraphs separated by ***; 3 asked), as the loop's judge does with judge.findings")] = BOOT.findings,
    judgments: Annotated[bool, typer.Option("--judgments/--no-judgments", help="also judgment rows (broken -> No, original -> Yes; off: the checkers vouch for the constraints, not for the task)")] = BOOT.judgments,
    teacher: Annotated[Optional[str], typer.Option(help="model string of a stronger model: it judges and refines instead (the paper's way)")] = None,
    votes: Annotated[int, typer.Option(min=1, help="with --teacher: judge votes per answer")] = 1,
    budget: Annotated[int, typer.Option(min=1, help="with --teacher: judged refinements per failed answer")] = BOOT.budget,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="with --teacher: tokens per judge reply and refinement")] = 512,
    seed: Annotated[int, typer.Option(help="seed of the breaks (offline) or sampling (teacher)")] = 0,
    refine_format: Annotated[str, typer.Option(help="the refiner's reply in the rows: rewrite (the whole answer) or edits (operations on it; search.refine_format)")] = "rewrite",
):
    """Build refiner SFT data: offline by breaking one constraint of answers that meet it, or with a --teacher."""
    import collections

    from spar.io import read_jsonl, refuse_same_path, write_jsonl
    from spar.selfplay import bootstrap as B
    from spar.types import Completion

    _check_format(refine_format)
    if pairs_rejected not in B.REJECTED:
        raise DataError(f"--pairs-rejected must be one of {', '.join(B.REJECTED)}, got {pairs_rejected!r}")
    refuse_same_path(input, out, eval_out, pairs_out)
    rows = read_jsonl(input, Completion)
    if teacher:
        sft = B.teacher_rows(_backend(teacher), rows, JUDGE.but(votes=votes, mode="hybrid", max_new_tokens=max_new_tokens),
                             SEARCH.but(strategy="bfs", budget=budget, max_new_tokens=max_new_tokens), seed=seed)
        write_jsonl(out, sft)
        typer.echo(f"wrote {len(sft)} rows to {out}", err=True)
        return
    cfg = B.BootstrapConfig(per_answer=per_answer, extra=extra, judgments=judgments, eval_share=eval_share, seed=seed,
                            heldout_kinds=_kinds(heldout_kinds), kinds=_kinds(kinds), whole_fixes=whole_fixes, findings=findings)
    train, held = B.offline_examples(rows, cfg)
    if not train:
        raise DataError(f"{input}: no answer meets a constraint that can be broken; nothing to learn from")
    sft = B.sft_rows(train, cfg.judgments, fmt=refine_format)
    write_jsonl(out, sft)
    if eval_out:
        write_jsonl(eval_out, B.split_heldout(held, cfg))
    if pairs_out:
        write_jsonl(pairs_out, B.preference_rows(train, fmt=refine_format, rejected=pairs_rejected))
    kinds = collections.Counter(x.kind for x in train)
    typer.echo(f"wrote {len(train)} break-and-restore examples ({sum(x.whole_fix for x in train)} of them whole fixes; {len(sft)} rows) to {out}"
               + (f", {len(held)} held-out breaks to {eval_out}" if eval_out else "") + "; breaks per kind: "
               + ", ".join(f"{k.split(':')[1]} {n}" for k, n in kinds.most_common()), err=True)


@bootstrap_app.command("eval")
@friendly
def bootstrap_eval(
    input: Annotated[Path, typer.Option("--input", "-i", help="held-out breaks from `spar bootstrap refiner --eval-out`"), IN],
    output: Annotated[Path, typer.Option("--output", "-o", help="trees JSONL (per item); the report goes beside it as .json"), OUT],
    model: ModelOpt = "embedded",
    strategy: Annotated[str, typer.Option(help="greedy (one refinement) or bfs, dfs, best_of_n, iterative")] = "greedy",
    budget: Annotated[int, typer.Option(min=1, help="judged refinements per break at most")] = 1,
    min_similarity: Annotated[float, typer.Option(min=0.0, max=1.0, help="guard: similarity to the answer refined")] = SEARCH.min_similarity,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="tokens per refinement")] = 256,
    batch_size: Annotated[int, typer.Option(min=1, help="sequences per forward pass")] = 16,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    refine_format: Annotated[str, typer.Option(help="the refiner's reply: rewrite (the whole answer) or edits (operations on it)")] = "rewrite",
    findings: Annotated[bool, typer.Option("--findings/--no-findings", help="the checklists the refiner is shown say what each answer has (judge.findings): the breaks' own, rewritten as read, and the judge's on refinements")] = False,
    dtype: DtypeOpt = None,
):
    """How well a refiner repairs held-out breaks: repaired (checkers pass, guard passes) per group and kind."""
    import json

    from spar.io import read_jsonl, refuse_same_path, write_text
    from spar.search.driver import Searcher
    from spar.search.stage import search_file
    from spar.selfplay.bootstrap import refiner_report
    from spar.types import Negative

    _check_format(refine_format)
    report_path = output.with_suffix(".json")
    refuse_same_path(input, output, report_path)
    cfg = SEARCH.but(strategy=strategy, budget=budget, branch=min(3, budget), min_similarity=min_similarity,
                     max_new_tokens=max_new_tokens, refine_format=refine_format)
    searcher = Searcher(_backend(model, batch_size, dtype=dtype), JudgeSettings(votes=1, mode="verifier", findings=findings),
                        cfg, seed)
    from spar.roles.judge import with_findings

    def told(n: Negative) -> Negative:
        return n.model_copy(update={"judgment": with_findings(n.judgment, n.prompt, n.response)})

    trees = search_file(searcher, input, output, prepare=told if findings else None)
    report = {"model": model, "strategy": strategy, "budget": budget, "refine_format": refine_format, "findings": findings,
              "edit_failures": searcher.edit_failures, "groups": refiner_report(trees, read_jsonl(input, Negative))}
    write_text(report_path, json.dumps(report, indent=1) + "\n")
    for name, g in report["groups"].items():
        typer.echo(f"{name:60s} {g['repaired']:4d}/{g['n']:<4d} repaired  ({g['checker_pass']} past the checkers, "
                   f"mean similarity {g['mean_similarity']}, {g['machinery']} with machinery)", err=True)

