"""The eval commands' work: run, print a table, write JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from spar.io import DataError, refuse_same_path, write_jsonl, write_text


def ifeval_run(model, data, responses, limit, output: Path, max_new_tokens: int, batch_size: int, backend_factory,
               search=None, refiner: str | None = None, judge_cfg=None) -> dict:
    from spar.eval.ifeval import load_ifeval, outcome_rows, read_responses, score

    if responses is not None:  # the responses file is read, never written
        refuse_same_path(responses, output, output.with_suffix(".outcomes.jsonl"))
    prompts = load_ifeval(data)
    if limit:
        prompts = prompts[:limit]
    t0 = time.perf_counter()
    if responses is not None:
        answers = read_responses(responses, prompts)
        if len(answers) < len(prompts):
            Console(stderr=True).print(f"[yellow]scoring {len(answers)} of {len(prompts)} prompts: "
                                       "the others have no response in the file[/yellow]")
            prompts = [p for p in prompts if p.id in answers]
        source = str(responses)
    else:
        if not model:
            raise DataError("spar eval ifeval needs --model, or --responses to score saved answers")
        from spar.generate import generate_file
        from spar.llm import Sampling

        resp_path = output.with_suffix(".responses.jsonl")
        rows = generate_file(backend_factory(model, batch_size), prompts, resp_path,
                             Sampling(max_new_tokens=max_new_tokens), chunk=batch_size * 4)
        answers = {r.id: r.completions[0] for r in rows}
        source = str(resp_path)
    gen_s = time.perf_counter() - t0
    scores, per_prompt = score(prompts, answers)
    write_jsonl(output.with_suffix(".outcomes.jsonl"), outcome_rows(per_prompt))
    result = {"benchmark": "ifeval", "model": model, "responses": source, "max_new_tokens": max_new_tokens,
              "seconds": round(gen_s, 1), **scores.as_dict()}
    if search is not None:  # tree search at inference time, scored beside the plain answers
        from spar.eval.refine import search_at_inference

        rmodel = refiner or model
        if not rmodel:
            raise DataError("--search needs --refiner (or --model)")
        final, rows, spend = search_at_inference(backend_factory(rmodel, batch_size), prompts, answers, judge_cfg, search)
        searched, per = score(prompts, final)
        items = output.with_name(output.stem + ".search.items.jsonl")
        write_jsonl(items, rows)
        write_jsonl(output.with_name(output.stem + ".search.outcomes.jsonl"), outcome_rows(per))
        result["search"] = {"refiner": rmodel, "strategy": search.strategy, "budget": search.budget,
                            "judge": judge_cfg.mode, "votes": judge_cfg.votes, "items_file": items.name,
                            "spend": spend, **searched.as_dict()}
    write_text(output, json.dumps(result, indent=2) + "\n")
    table = Table(title=f"IFEval ({scores.n_prompts} prompts, {scores.n_instructions} instructions)")
    for c in ("prompt strict", "inst strict", "prompt loose", "inst loose", "average"):
        table.add_column(c, justify="right")
    if search is not None:
        table.add_column("", justify="left")
    rows_out = [(scores, "as answered")] + ([(searched, f"after {search.strategy} search (budget {search.budget}, "
                                                      f"{spend['replaced']} of {spend['searched']} searched replaced)")]
                                           if search is not None else [])
    for sc, label in rows_out:
        cells = [f"{x:.2f}" for x in (sc.prompt_strict, sc.inst_strict, sc.prompt_loose, sc.inst_loose, sc.average)]
        table.add_row(*(cells + [label] if search is not None else cells))
    Console().print(table)
    Console(stderr=True).print(f"[dim]scores written to {output}[/dim]")
    return result


def llmbar_run(model, data, votes: list[int], limit, output: Path, max_new_tokens: int, batch_size: int,
               backend_factory) -> dict:
    from spar.eval.llmbar import evaluate_llmbar, load_llmbar
    from spar.io import write_jsonl
    from spar.settings import JudgeSettings

    items = load_llmbar(data, limit)
    backend = backend_factory(model, batch_size)
    cfg = JudgeSettings(votes=max(votes), mode="llm", max_new_tokens=max_new_tokens)
    t0 = time.perf_counter()
    # the replies go to OUTPUT's stem + .replies.jsonl as they come: a killed run resumes from there
    by_k, rows = evaluate_llmbar(backend, items, cfg, ks=votes, replies_path=output.with_name(output.stem + ".replies.jsonl"))
    items_path = output.with_name(output.stem + ".items.jsonl")
    result = {"benchmark": "llmbar", "model": model, "votes": sorted(by_k), "samples_per_item": max(votes),
              "greedy": max(votes) == 1, "seconds": round(time.perf_counter() - t0, 1), "items_file": items_path.name,
              "by_votes": {str(k): v for k, v in by_k.items()}}
    write_jsonl(items_path, rows)
    write_text(output, json.dumps(result, indent=2) + "\n")
    table = Table(title=f"LLMBar pointwise ({len(items)} items; the verdict at k votes is the majority of the first k "
                        f"of {max(votes)} samples)")
    for c in ("votes", "subset", "accuracy", "F1", "undecided", "unparseable %"):
        table.add_column(c, justify="right")
    for k, scores in by_k.items():
        for sub, m in scores.items():
            if sub != "unparseable":
                table.add_row(str(k), sub, f"{m['accuracy']:.2f}", f"{m['f1']:.2f}", str(m.get("undecided", "")),
                              f"{scores['unparseable']:.2f}")
    Console().print(table)
    return result
