"""AutoIF on spar's stages (spec ``autoif.md``, section 13): a supervision model (``autoif.teacher``,
or the actor itself) writes instructions, verifier functions with test cases and back-translations;
the functions are cross-validated in the sandbox (``spar.sandbox``), the instructions are attached
to queries (spar's seed tasks, in place of ShareGPT), the actor answers, the functions score each
answer (execution feedback), and DPO trains on (passing, failing) answers. Every filter's
survivors and rejections are counted in the manifest and ``stats.json``. The back-translation
check asks the model itself whether the back-translated instruction contradicts the original (no
NLI model offline)."""

from __future__ import annotations

import json
import random

from spar.rows import map_rows
from spar.io import read_jsonl, write_jsonl, write_text
from spar.llm import Sampling
from spar.methods.base import Context, Method, Stage
from spar.methods.common import PROMPTS, eval_stages, train_stage
from spar.roles import templates as T
from spar.selfplay import autoif as A
from spar.types import Completion, Feedback, Prompt, Quality, SFTRow

# A few seed instructions of the kind the paper starts from (one atomic, checkable constraint each).
SEEDS = [
    "Answer using only words that begin with the letter B.",
    "Write the whole answer in telegram style and end it with the word STOP.",
    "Answer in exactly one sentence of exactly 20 words.",
    "Do not use the letter e anywhere in the answer.",
    "Write every word of the answer in lowercase.",
    "Answer with a bulleted list in which every line starts with '- '.",
    "Answer only with questions.",
    "Use no commas at all.",
    "Write the answer as a haiku of three lines.",
    "Make every sentence shorter than the one before it.",
    "Answer in fewer than 30 words.",
    "Put the whole answer in double quotes.",
]


def _teacher(ctx: Context):
    t = ctx.cfg.autoif.teacher
    return ctx.backend_for(t) if t else ctx.backend("actor")


def _sampling(ctx: Context, n: int) -> Sampling:
    a = ctx.cfg.autoif
    return Sampling(n=n, temperature=a.temperature, top_p=a.top_p, max_new_tokens=a.max_new_tokens, seed=ctx.seed)


def _instructions(ctx: Context) -> None:
    a = ctx.cfg.autoif
    chat = T.autoif_chat(T.AUTOIF_AUGMENT, n=str(a.instructions), examples="\n".join(f"- {s}" for s in SEEDS))
    replies = _teacher(ctx).generate([chat], _sampling(ctx, a.augment_samples))[0]
    new = [i for r in replies for i in A.parse_instructions(r)]
    rows = [{"id": f"i{k}", "instruction": ins, "source": "seed" if ins in SEEDS else "augmented"}
            for k, ins in enumerate(list(dict.fromkeys(SEEDS + new))[: a.max_instructions])]
    write_jsonl(ctx.path("instructions.jsonl"), rows)
    ctx.spend.update(augmented=len(set(new) - set(SEEDS)), taken=len(rows))


def _functions(ctx: Context) -> None:
    rows = [json.loads(x) for x in ctx.path("instructions.jsonl").read_text().splitlines()]
    if ctx.cfg.autoif.requests == "split":
        return _functions_split(ctx, rows)
    chats = [T.autoif_chat(T.AUTOIF_FUNCTION, instruction=r["instruction"]) for r in rows]
    replies = _teacher(ctx).generate(chats, _sampling(ctx, ctx.cfg.autoif.function_samples)) if chats else []
    out, parsed = [], 0
    for r, reps in zip(rows, replies):
        samples = [s for s in (A.parse_function_sample(x) for x in reps) if s is not None]
        parsed += len(samples)
        out.append({**r, "samples": [{"func": s.func, "cases": s.cases} for s in samples], "unparsed": len(reps) - len(samples)})
    write_jsonl(ctx.path("functions.jsonl"), out)
    ctx.spend.update(samples=sum(len(x) for x in replies), parsed=parsed)


def _functions_split(ctx: Context, rows: list[dict]) -> None:
    """``autoif.requests=split``: the function in a code-only request, and the test cases as texts
    the teacher was asked to write following (label True) or breaking (False) the instruction. The
    same rows as the joint request: the first function sample carries the instruction's cases."""
    a, teacher = ctx.cfg.autoif, _teacher(ctx)
    fchats = [T.autoif_chat(T.AUTOIF_FUNCTION_CODE, instruction=r["instruction"]) for r in rows]
    cchats = [T.autoif_chat(T.AUTOIF_CASE, instruction=r["instruction"], how=how)
              for r in rows for how in ("obeys", "breaks")]
    freplies = teacher.generate(fchats, _sampling(ctx, a.function_samples)) if rows else []
    creplies = teacher.generate(cchats, _sampling(ctx, a.case_samples)) if rows else []
    out, parsed, case_texts = [], 0, 0
    for i, (r, reps) in enumerate(zip(rows, freplies)):
        funcs = [f for f in map(A.parse_function_code, reps) if f is not None]
        cases = [(t, label) for label, reps_c in ((True, creplies[2 * i]), (False, creplies[2 * i + 1]))
                 for t in map(A.parse_case, reps_c) if t is not None]
        parsed, case_texts = parsed + len(funcs), case_texts + len(cases)
        samples = [{"func": f, "cases": cases if k == 0 else []} for k, f in enumerate(funcs)]
        out.append({**r, "samples": samples, "unparsed": len(reps) - len(funcs)})
    write_jsonl(ctx.path("functions.jsonl"), out)
    ctx.spend.update(samples=sum(len(x) for x in freplies), parsed=parsed,
                     case_samples=sum(len(x) for x in creplies), cases=case_texts)


def _pool(ctx: Context):
    from spar.sandbox import Limits, Pool

    a = ctx.cfg.autoif
    return Pool(workers=a.workers, limits=Limits(wall_seconds=a.wall_seconds, cpu_seconds=max(1, int(a.wall_seconds))),
                unsafe_no_network_isolation=a.unsafe_no_network_isolation)


def _verify(ctx: Context) -> None:
    a = ctx.cfg.autoif
    cfg = a  # AutoIFSettings holds the cross-validation rules (a CrossValidation)
    rows = [json.loads(x) for x in ctx.path("functions.jsonl").read_text().splitlines()]
    out, reasons, failures = [], {}, {}
    with _pool(ctx) as pool:
        for r in rows:
            samples = [A.FunctionSample(s["func"], [tuple(c) for c in s["cases"]]) for s in r["samples"]]
            funcs = list(dict.fromkeys(s.func for s in samples))
            inputs = list(dict.fromkeys(c[0] for s in samples for c in s.cases))
            enough = len(funcs) >= cfg.min_functions and len(inputs) >= 1
            verdicts = A.run_functions(pool, funcs, inputs) if enough else A.Verdicts()
            for k, v in verdicts.failures.items():
                failures[k] = failures.get(k, 0) + v
            v = A.cross_validate(samples, verdicts, cfg)
            key = v.reason.split(" (")[0] if v.reason else "kept"
            reasons[key] = reasons.get(key, 0) + 1
            out.append({"id": r["id"], "instruction": r["instruction"], "functions": v.functions, "cases": v.cases,
                        "reason": v.reason})
    write_jsonl(ctx.path("verified.jsonl"), out)
    ctx.spend.update(instructions=reasons, sandbox_failures=failures)


def _back_translate(ctx: Context) -> None:
    rows = [r for r in (json.loads(x) for x in ctx.path("verified.jsonl").read_text().splitlines()) if not r["reason"]]
    kept, labels = [], {"entailment": 0, "contradiction": 0, "unparsed": 0}
    if rows and ctx.cfg.autoif.back_translation:
        teacher = _teacher(ctx)
        greedy = Sampling(max_new_tokens=ctx.cfg.autoif.max_new_tokens, seed=ctx.seed)
        if ctx.cfg.autoif.requests == "split":  # one function per request, the instruction as plain text
            asks = [(i, T.autoif_chat(T.AUTOIF_BACK_ONE, function=f)) for i, r in enumerate(rows) for f, _ in r["functions"][:3]]
            got = teacher.generate([c for _, c in asks], greedy)
            per_row: list[list[str]] = [[] for _ in rows]
            for (i, _), (reply,) in zip(asks, got):
                text = A.parse_case(reply)
                if text:
                    per_row[i].append(text)
        else:
            backs = teacher.generate([T.autoif_chat(T.AUTOIF_BACK, functions="\n\n".join(f for f, _ in r["functions"][:3]))
                                      for r in rows], greedy)
            per_row = []
            for (reply,) in backs:
                try:
                    per_row.append([t for t in json.loads(reply) if isinstance(t, str)])
                except (json.JSONDecodeError, TypeError):
                    per_row.append([])
        for r, texts in zip(rows, per_row):
            if not texts:
                labels["unparsed"] += 1
                continue
            votes = teacher.generate([T.autoif_chat(T.AUTOIF_SAME, a=r["instruction"], b=t) for t in texts], greedy)
            verdicts = [T.parse_judgement(v[0]) for v in votes]
            labels["no verdict"] = labels.get("no verdict", 0) + sum(v is None for v in verdicts)
            found = ["contradiction" if v is True else "entailment" for v in verdicts if v is not None]
            for x in found:
                labels[x] += 1
            if A.back_translation_keeps(found):
                kept.append(r)
    else:
        kept = rows
    write_jsonl(ctx.path("kept.jsonl"), kept)
    ctx.spend.update(labels=labels, kept=len(kept))


def _queries(ctx: Context) -> None:
    from spar.constraints.seeds import seed_tasks, split_of

    tasks = [t for _, t in seed_tasks() if split_of(t) == "train"]
    rng = random.Random(ctx.seed)
    rows = []
    for r in (json.loads(x) for x in ctx.path("kept.jsonl").read_text().splitlines()):
        for j, q in enumerate(rng.sample(tasks, min(ctx.cfg.autoif.queries, len(tasks)))):
            rows.append(Prompt(id=f"{r['id']}-q{j}", messages=[{"role": "user", "content": T.AUTOIF_RESPONSE.format(
                query=q, instruction=r["instruction"])}], source=f"autoif:{r['id']}"))
    write_jsonl(ctx.path("queries.jsonl"), rows)
    ctx.spend["queries"] = len(rows)


def _sample(ctx: Context) -> None:
    from spar import stages as S

    S.run_sample(ctx.backend("actor"), ctx.cfg.sample, ctx.path("queries.jsonl"), ctx.path("samples.jsonl"), ctx.seed,
                 chunk=ctx.chunk, show=ctx.show)


def _feedback(ctx: Context) -> None:
    funcs = {r["id"]: [f for f, _ in r["functions"]] for r in map(json.loads, ctx.path("kept.jsonl").read_text().splitlines())}
    todo: list[Completion] = []

    def work(part: list[Completion], emit, _bar) -> None:
        for c in part:
            fs = funcs[c.id.rsplit("-q", 1)[0]]
            v = A.run_functions(pool, fs, c.completions)
            rates = [A.pass_rate([v.results[(fn, y)] for fn in fs]) for y in c.completions]
            emit(Feedback(id=c.id, prompt=c.prompt, completions=c.completions, pass_rates=rates))

    with _pool(ctx) as pool:
        map_rows(read_jsonl(ctx.path("samples.jsonl"), Completion), ctx.path("feedback.jsonl"), Feedback,
                 key=lambda c: c.id, work=work, chunk=ctx.chunk, started=todo.extend)
    ctx.spend["scored"] = len(todo)


def _quality(ctx: Context) -> None:
    """Spec section 9: the supervision model scores each response that passed the functions for how
    well it still answers its query (an instruction can contradict its query, which the functions
    cannot see). Resumable by input."""
    a = ctx.cfg.autoif
    instruction = {r["id"]: r["instruction"] for r in map(json.loads, ctx.path("kept.jsonl").read_text().splitlines())}
    asked = kept = 0

    def work(part: list[Feedback], emit, _bar) -> None:
        nonlocal asked, kept
        jobs = []  # (row, response index, chat)
        for k, f in enumerate(part):
            ins = instruction[f.id.rsplit("-q", 1)[0]]
            query = f.prompt[-1].content.removesuffix(" " + ins)
            jobs += [(k, j, T.autoif_chat(T.AUTOIF_QUALITY, instruction=ins, query=query, response=y))
                     for j, (y, rate) in enumerate(zip(f.completions, f.pass_rates)) if rate >= a.positive]
        replies = _teacher(ctx).generate([c for _, _, c in jobs], _sampling(ctx, a.quality_samples)) if jobs and a.quality_samples else []
        got = {(k, j): r for (k, j, _), r in zip(jobs, replies)}
        for k, f in enumerate(part):
            scores, texts = [], []
            for j in range(len(f.completions)):
                rs = got.get((k, j), [])
                parsed = [v for v in map(T.parse_quality, rs) if v is not None]
                scores.append(sum(parsed) / len(parsed) if parsed else None)
                texts.append(rs)
                asked += bool(rs)
                kept += bool(parsed) and sum(parsed) / len(parsed) >= a.quality_min
            emit(Quality(id=f.id, scores=scores, replies=texts))

    map_rows(read_jsonl(ctx.path("feedback.jsonl"), Feedback), ctx.path("quality.jsonl"), Quality, key=lambda f: f.id,
             work=work, chunk=ctx.chunk)
    ctx.spend.update(asked=asked, kept=kept)


def _kept_by_quality(ctx: Context) -> dict[str, list[bool]]:
    """Per input, which responses pass the quality check (all of them when it is off)."""
    a = ctx.cfg.autoif
    path = ctx.path("quality.jsonl")
    if not a.quality_samples or not path.exists():
        return {}
    return {q.id: [s is not None and s >= a.quality_min for s in q.scores] for q in read_jsonl(path, Quality)}


def _pairs(ctx: Context) -> None:
    rows = [json.loads(x) for x in ctx.path("feedback.jsonl").read_text().splitlines()] if ctx.path("feedback.jsonl").exists() else []
    quality = _kept_by_quality(ctx)
    positive = ctx.cfg.autoif.positive
    pairs, hist, dropped = [], {"0": 0, "(0,0.5)": 0, ">=0.5": 0}, 0
    for r in rows:
        for rate in r["pass_rates"]:
            hist["0" if rate == 0 else (">=0.5" if rate >= positive else "(0,0.5)")] += 1
        if r["id"] in quality:  # a passing response that fails the quality check is neither chosen nor an SFT row
            ok = quality[r["id"]]
            dropped += sum(rate >= positive and not good for rate, good in zip(r["pass_rates"], ok))
            keep = [rate < positive or good for rate, good in zip(r["pass_rates"], ok)]
            r["completions"] = [y for y, k in zip(r["completions"], keep) if k]
            r["pass_rates"] = [x for x, k in zip(r["pass_rates"], keep) if k]
        for y_w, y_l in A.sample_pairs(list(zip(r["completions"], r["pass_rates"])), f"{ctx.seed}:{r['id']}",
                                       positive):
            pairs.append({"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": y_w}],
                          "rejected": [{"role": "assistant", "content": y_l}], "origin": {"kind": "autoif", "input": r["id"]}})
    write_jsonl(ctx.path("dpo.jsonl"), pairs)
    # AutoIF's SFT data (spec section 8): every response whose pass rate reaches the threshold, as a
    # chat; spar trains DPO on the pairs (section 13), the SFT rows are there for `spar train sft`
    sft = [SFTRow.of(r["prompt"], y, {"kind": "autoif", "input": r["id"], "pass_rate": rate})
           for r in rows for y, rate in zip(r["completions"], r["pass_rates"]) if rate >= positive]
    write_jsonl(ctx.path("sft.jsonl"), sft)
    stats = {"method": "autoif", "pass_rates": hist, "quality_dropped": dropped, "pairs": len(pairs), "sft_rows": len(sft)}
    for name in ("instructions", "functions", "verify", "back_translate", "queries", "quality"):
        rec = ctx.record(name)
        stats[name] = {k: v for k, v in rec.items() if k not in ("hash", "status", "seed", "stage_seed", "started", "spend")}
    write_text(ctx.path("stats.json"), json.dumps(stats, indent=1) + "\n")
    ctx.spend["pairs"] = len(pairs)


METHOD = Method(
    name="autoif",
    roles=("actor",),
    prologue=(PROMPTS, *eval_stages()),
    stages=(
        Stage("instructions", _instructions, outputs=("instructions.jsonl",), settings=("autoif",), models=("actor",)),
        Stage("functions", _functions, inputs=("instructions.jsonl",), outputs=("functions.jsonl",), settings=("autoif",),
              models=("actor",)),
        Stage("verify", _verify, inputs=("functions.jsonl",), outputs=("verified.jsonl",), settings=("autoif",)),
        Stage("back_translate", _back_translate, inputs=("verified.jsonl",), outputs=("kept.jsonl",), settings=("autoif",),
              models=("actor",)),
        Stage("queries", _queries, inputs=("kept.jsonl",), outputs=("queries.jsonl",), settings=("autoif",)),
        Stage("sample", _sample, inputs=("queries.jsonl",), outputs=("samples.jsonl",), settings=("sample",),
              models=("actor",), resumable=True),
        Stage("feedback", _feedback, inputs=("samples.jsonl", "kept.jsonl"), outputs=("feedback.jsonl",),
              settings=("autoif",), resumable=True),
        Stage("quality", _quality, inputs=("feedback.jsonl", "kept.jsonl"), outputs=("quality.jsonl",), settings=("autoif",),
              models=("actor",), resumable=True),
        Stage("pairs", _pairs, inputs=("feedback.jsonl", "quality.jsonl"), outputs=("dpo.jsonl", "sft.jsonl", "stats.json"),
              settings=("autoif",)),
        train_stage("train_actor", "dpo", "actor", "dpo.jsonl", "train_actor", "actor"),
        *eval_stages(),
    ),
)
