"""Bootstrap the refiner before self-play: teach it to *edit* an answer, not rewrite it.

SPaR starts its refiner from supervised data a stronger model wrote. spar builds such data two ways:

- **offline** (:func:`offline_examples`): take actor answers, keep the constraints each one meets
  (its prompt's own, plus up to ``extra`` more that it happens to meet, drawn from the procedural
  set and added to its prompt), break exactly one with a small programmatic edit
  (:mod:`spar.constraints.breakers`, each edit confirmed by the checker, the others still met), and
  ask for the original back. The refine example is the refine chat of the broken answer with the
  checkers' judgment -> ``[[start]]`` original ``[[end]]``: minimal edits by construction.
  Judgment examples (the checklist verdict on the broken and on the original answer) are opt-in.
- **teacher** (:func:`teacher_rows`): a stronger model behind any backend judges the actor's
  answers and refines the failed ones by tree search; its accepted, faithful refinements and its
  verdicts that agree with the checkers become the same kinds of rows (the paper's way).

Held-out examples (whole constraint kinds, and a share of prompts) are written as negatives, so
that ``spar bootstrap eval`` (a search over them) measures whether the skill carries over.
"""

from __future__ import annotations

from spar.io import DataError

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from spar.constraints.breakers import BREAKERS, break_one, split_sentences
from spar.constraints.fixers import FIXERS
from spar.constraints.checkers import follows
from spar.constraints.findings import requirement
from spar.constraints.procedural import SPECS, contradiction
from spar.roles import edits
from spar.roles.guard import GuardConfig, machinery
from spar.roles.guard import check as guard_check
from spar.roles.templates import END, JUDGE, START, checklist, judge_chat, refine_chat
from spar.settings import BootstrapSettings
from spar.types import Completion, Constraint, Judgment, Message, Negative, PreferencePair, Prompt, SFTRow


_DEFAULT = BootstrapSettings()  # the shared knobs are declared there once (with their reasons)


@dataclass(frozen=True)
class BootstrapConfig:
    per_answer: int = _DEFAULT.per_answer  # broken copies of one answer (each breaks another constraint)
    extra: int = _DEFAULT.extra  # constraints an answer happens to meet, added to its prompt (more kinds to break)
    judgments: bool = _DEFAULT.judgments  # also judgment examples (broken -> No, original -> Yes)
    heldout_kinds: tuple[str, ...] = ()  # kinds never broken in training data: their breaks go to eval
    kinds: tuple[str, ...] = ()  # only these kinds are added and broken (empty: every kind with a breaker)
    # also teach a fixer's whole edit (a break teaches only the undoing of one slip)
    whole_fixes: bool = _DEFAULT.whole_fixes
    eval_share: float = _DEFAULT.eval_share  # share of prompts whose breaks go to eval instead of training
    findings: bool = _DEFAULT.findings  # unmet checklist lines say what the broken answer has (judge.findings)
    min_words: int = 8  # shorter answers are not worth restoring
    max_words: int = 160  # longer ones cost the most to train on (a refine example holds the answer twice)
    # a restoration this guard rejects is no example of an edit. 0.5, not the search's 0.7: a break that
    # repeats a sentence or drops a closing line is undone by a larger edit (the measured data used 0.5).
    guard: GuardConfig = GuardConfig(min_similarity=0.5)
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [k for k in (*self.heldout_kinds, *self.kinds) if k not in BREAKERS]
        if unknown:
            raise DataError(f"no breaker for kind(s) {', '.join(unknown)}; kinds: {', '.join(sorted(BREAKERS))}")
        if not 0 <= self.eval_share < 1:
            raise DataError(f"eval_share must be in [0, 1), got {self.eval_share}")


@dataclass
class Break:
    prompt: Prompt  # the answer's prompt, with only constraints the original meets
    original: str
    broken: str
    kind: str  # the constraint broken
    checks: list[tuple[str, bool]] = field(default_factory=list)  # (constraint text, met) for the broken answer
    whole_fix: bool = False  # "broken" is the answer before a fixer made it meet the constraint

    @property
    def rationale(self) -> str:
        return checklist(self.checks)


def task_of(prompt: Prompt) -> str | None:
    """The task a procedural prompt was built from: its text without the constraints' wording."""
    suffix = " ".join(c.text for c in prompt.constraints)
    text = prompt.text
    if prompt.constraints and suffix and text.endswith(" " + suffix):
        return text[: -len(suffix) - 1]
    return None


def _met(c: Constraint, answer: str, prompt: str) -> bool:
    return follows(c.kind, c.kwargs, answer, prompt=prompt)


def _constraints_met(row: Completion, answer: str, rng: random.Random,
                     cfg: BootstrapConfig) -> tuple[str, str, list[Constraint], tuple[Constraint, str] | None] | None:
    """(task text, answer, constraints the answer meets, last fix) for a new prompt; None if there
    are none.

    Extra constraints are drawn from the procedural set; one the answer does not meet is taken when
    a fixer (:data:`spar.constraints.fixers.FIXERS`) makes the answer meet it without breaking
    the others, and the fixed answer is then the one to restore. The last fix is (its constraint,
    the answer before it), or None when no fixer was used."""
    prompt = Prompt(id=row.id, messages=row.prompt, constraints=row.constraints)
    task = task_of(prompt)
    own = [c for c in row.constraints if c.kind in SPECS and _met(c, answer, prompt.text)]
    if task is None:  # not a procedural prompt: usable only whole, when every constraint is met
        return (prompt.text, answer, [], None) if own and len(own) == len(row.constraints) else None
    chosen = list(own)
    kinds = sorted(set(BREAKERS) & set(SPECS) & set(cfg.kinds or BREAKERS))
    last_fix = None
    for _ in range(12 * cfg.extra):
        if len(chosen) >= len(own) + cfg.extra:
            break
        kind = rng.choice(kinds)
        if any(c.kind == kind for c in chosen):
            continue
        kw = SPECS[kind].sample(rng, task)
        c = Constraint(kind=kind, kwargs=kw, text=SPECS[kind].render(kw))
        if any(contradiction(c, o) is not None for o in chosen):
            continue
        if _met(c, answer, task):
            chosen.append(c)
        elif kind in FIXERS:
            fixed = FIXERS[kind](answer, kw)
            if all(_met(x, fixed, task) for x in [*chosen, c]):
                last_fix = (c, answer)
                answer = fixed
                chosen.append(c)
    return (task, answer, chosen, last_fix) if chosen else None


def offline_examples(rows: Sequence[Completion], cfg: BootstrapConfig = BootstrapConfig()) -> tuple[list[Break], list[Break]]:
    """Break-and-restore examples from answers: (training, held out)."""
    rng = random.Random(cfg.seed)
    train: list[Break] = []
    held: list[Break] = []
    eval_prompts = {r.id for r in rows if random.Random(f"{cfg.seed}:{r.id}").random() < cfg.eval_share}
    seen: set[tuple[str, str]] = set()
    for row in rows:
        for index, answer in enumerate(row.completions):
            answer = answer.strip()
            if not cfg.min_words <= len(answer.split()) <= cfg.max_words or machinery(answer) is not None:
                continue
            got = _constraints_met(row, answer, rng, cfg)
            if got is None:
                continue
            task, answer, cons, last_fix = got
            if cons:
                text = task + " " + " ".join(c.text for c in cons)
            else:  # a whole non-procedural prompt, every constraint met
                text, cons = task, list(row.constraints)
            prompt = Prompt(id=f"{row.id}#{index}", messages=[*row.prompt[:-1], Message(role="user", content=text)],
                            constraints=cons, source="bootstrap")
            order = [c for c in cons if c.kind in BREAKERS and (not cfg.kinds or c.kind in cfg.kinds)]
            rng.shuffle(order)
            made = 0

            def add(c: Constraint, broken: str, whole_fix: bool = False) -> None:
                seen.add((text, broken))
                checks = [(requirement(o.text or o.kind, o.kind, o.kwargs, broken, o is not c, cfg.findings), o is not c)
                          for o in cons]
                ex = Break(prompt=prompt, original=answer, broken=broken, kind=c.kind, checks=checks, whole_fix=whole_fix)
                (held if c.kind in cfg.heldout_kinds or row.id in eval_prompts else train).append(ex)

            if cfg.whole_fixes and last_fix is not None:  # the fixer's whole edit, when only its constraint fails before it
                c, before = last_fix
                if (text, before) not in seen and not _met(c, before, text) \
                        and all(_met(o, before, text) for o in cons if o is not c) and guard_check(before, answer, cfg.guard).ok:
                    add(c, before, whole_fix=True)
            for c in order:
                if made == cfg.per_answer:
                    break
                others = [o for o in cons if o is not c]
                broken = break_one(answer, c, others, rng, prompt=text)
                if broken is None or (text, broken) in seen:
                    continue
                if not guard_check(broken, answer, cfg.guard).ok:  # the restoration must itself pass the guard
                    continue
                add(c, broken)
                made += 1
    return train, held


def sft_rows(examples: Sequence[Break], judgments: bool = False, fmt: str = "rewrite") -> list[dict]:
    """Conversational SFT rows (what ``spar train sft`` and the RFT data use). With ``fmt="edits"``
    the target is the edit operations that restore the original (spar.roles.edits), not the
    original written out again."""
    out = []
    for ex in examples:
        origin = {"bootstrap": "offline", "prompt": ex.prompt.id, "broken": ex.kind, **({"whole_fix": True} if ex.whole_fix else {})}
        chat = refine_chat(ex.prompt.text, ex.broken, ex.rationale, fmt)
        reply = (edits.render(edits.ops_between(ex.broken, ex.original)) if fmt == "edits"
                 else f"{START}\n{ex.original}\n{END}")
        out.append(SFTRow.of(chat, reply, {"kind": "refinement", **origin}))
        if judgments:
            for response, verdict in ((ex.broken, ex.rationale), (ex.original, checklist([(t, True) for t, _ in ex.checks]))):
                chat = judge_chat(ex.prompt.text, response)
                out.append(SFTRow.of(chat, verdict, {"kind": "judgment", "label": response == ex.original, **origin}))
    return out


REJECTED = ("copy", "echo", "mixed")


def _echo_sentences() -> list[str]:
    """The judge prompt's sentences after the response: what a refiner pushed off copying was seen
    to append (results/README.md, the preference stage)."""
    tail = JUDGE.split("{response}", 1)[1]
    return [x for x in split_sentences(" ".join(tail.split())) if len(x.split()) >= 4]


def preference_rows(examples: Sequence[Break], fmt: str = "rewrite", rejected: str = "copy") -> list[PreferencePair]:
    """Refiner preference pairs (``spar train dpo``): the same refine chat as :func:`sft_rows`, chosen
    = the restoring edit. Rejected (``rejected``): ``copy``, the answer handed back unchanged -- the
    copy a small refiner falls into, so a preference stage after SFT can push it off copying (issue
    27's "teach the edit, not the copy"); ``echo``, the restoring edit with a sentence of the judge
    prompt appended -- where a refiner pushed off the copy went; ``mixed``, copy and echo by turns
    (even examples copy, odd echo), the same number of pairs."""
    if rejected not in REJECTED:
        raise DataError(f"rejected must be one of {', '.join(REJECTED)}, got {rejected!r}")
    echoes = _echo_sentences()
    out = []
    for i, ex in enumerate(examples):
        chat = refine_chat(ex.prompt.text, ex.broken, ex.rationale, fmt)
        kind = rejected if rejected != "mixed" else ("copy", "echo")[i % 2]
        echo = echoes[i % len(echoes)]
        if fmt == "edits":  # the copy as operations: one that quotes a span and gives it back unchanged
            span = ex.broken.split("\n", 1)[0][:60]
            ops = edits.ops_between(ex.broken, ex.original)
            restore = edits.render(ops)
            bad = (edits.render([edits.Op(kind="replace", quote=span, text=span)]) if kind == "copy"
                   else edits.render([*ops, edits.Op(kind="append", text="\n\n" + echo)]))
        else:
            restore = f"{START}\n{ex.original}\n{END}"
            bad = f"{START}\n{ex.broken}\n{END}" if kind == "copy" else f"{START}\n{ex.original}\n\n{echo}\n{END}"
        out.append(PreferencePair(prompt=chat, chosen=[Message(role="assistant", content=restore)],
                                  rejected=[Message(role="assistant", content=bad)],
                                  origin={"bootstrap": "offline", "prompt": ex.prompt.id, "broken": ex.kind,
                                          "rejected": kind, **({"whole_fix": True} if ex.whole_fix else {})}))
    return out


def as_negatives(examples: Sequence[Break], group: dict[str, str] | None = None) -> list[Negative]:
    """Held-out breaks as search roots; the prompt's ``source`` names the kind broken and why it is held out."""
    out = []
    for i, ex in enumerate(examples):
        why = (group or {}).get(ex.kind, "heldout-prompt")
        p = ex.prompt.model_copy(update={"id": f"{ex.prompt.id}~{i}", "source": f"bootstrap:{why}:{ex.kind}"})
        judgment = Judgment(follows=False, votes=[], rationale=ex.rationale, by="verifier",
                            checks=[ok for _, ok in ex.checks], score=0.5 * sum(ok for _, ok in ex.checks) / len(ex.checks),
                            rationale_from_vote=False)
        out.append(Negative(prompt=p, index=0, response=ex.broken, judgment=judgment))
    return out


def split_heldout(examples: Sequence[Break], cfg: BootstrapConfig) -> list[Negative]:
    return as_negatives(examples, {k: "heldout-kind" for k in cfg.heldout_kinds})


def teacher_rows(teacher, rows: Sequence[Completion], judge_cfg, search_cfg, seed: int = 0) -> list[dict]:
    """The paper's bootstrap: the teacher judges the answers, refines the failed ones by search, and
    its faithful accepted refinements and agreeing verdicts become refiner SFT rows."""
    from spar.roles.judge import judge
    from spar.search.driver import Searcher
    from spar.selfplay.data import dpo_pairs, rft_examples
    from spar.settings import RFTSettings
    from spar.selfplay.negatives import pick_negatives
    from spar.settings import NegativesSettings
    from spar.types import JudgedSample

    prompts = {r.id: Prompt(id=r.id, messages=r.prompt, constraints=r.constraints, source="bootstrap") for r in rows}
    flat = [(r.id, k, text) for r in rows for k, text in enumerate(r.completions)]
    js = judge(teacher, [prompts[i] for i, _, _ in flat], [t for _, _, t in flat], judge_cfg, seed=seed)
    judged = [JudgedSample(id=i, index=k, response=t, judgment=j) for (i, k, t), j in zip(flat, js)]
    negatives = pick_negatives(list(prompts.values()), judged, NegativesSettings(per_prompt="all"), seed=seed)
    trees = Searcher(teacher, judge_cfg, search_cfg, seed).run(negatives)
    pairs, _ = dpo_pairs(trees, prompts, search_cfg.guard_config())
    out = rft_examples(trees, judged, prompts, RFTSettings(), pairs, seed=seed)
    for r in out:
        r["origin"]["bootstrap"] = "teacher"
    return out


def refiner_report(trees, negatives: Sequence[Negative]) -> dict:
    """Per held-out group (``heldout-kind``, ``heldout-prompt``) and per kind broken: how many breaks
    the refiner repaired (accepted by the checkers and faithful), how many it got past the checkers
    at all, and how close its refinements stay to the answer they refine."""
    import statistics

    source = {n.key: n.prompt.source for n in negatives}
    groups: dict[str, dict] = {}
    for t in trees:
        _, why, kind = source[t.id].split(":", 2)
        kids = [n for n in t.nodes if n.parent is not None]
        for name in (why, f"{why}:{kind}"):
            g = groups.setdefault(name, {"n": 0, "repaired": 0, "checker_pass": 0, "refinements": 0, "sims": [],
                                         "machinery": 0})
            g["n"] += 1
            g["repaired"] += t.solved
            g["checker_pass"] += any(n.judgment is not None and n.judgment.value > 0.5 for n in kids)
            g["refinements"] += len(kids)
            g["sims"] += [n.similarity for n in kids if n.similarity is not None]
            g["machinery"] += sum("machinery" in n.guard for n in kids)
    out = {}
    for name, g in sorted(groups.items()):
        sims = g.pop("sims")
        out[name] = {**g, "repaired_share": round(g["repaired"] / g["n"], 4),
                     "mean_similarity": round(statistics.fmean(sims), 4) if sims else None}
    return out
