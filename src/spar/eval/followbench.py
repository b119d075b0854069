"""FollowBench (English): 350 of its 820 scored items checked by rules, the other 470 by an LLM judge.

FollowBench builds each example in five levels, each adding one constraint to the one before. 350
of its 820 scored English items are checked by rules in the upstream evaluation: every item of the
example-constraint file (the answer must fit the demonstrated template), the items whose source
task has a known answer or a countable form (E2E, WIKIEVENTS, CoNLL-2003, text editing, CNN/DM,
XSum, SAMSum, Gigaword, arXiv summaries, BBH logical and date questions, GSM8K, a made-up spatial
task) and two format examples (ids 22 and 30). The rules here follow the upstream semantics,
quirks included (written anew: the upstream code is not copied).

The other 470 go to a judge model, as upstream does: it is shown the example's constraint-evolution
path (the level-0 instruction, then each level's instruction up to the item's), the answer, and asked
for a last line holding a list of one YES or NO per added constraint. A reply whose last line is not
such a list of the right length is *unparsed*: scored as a failure (all NO) and counted apart, never
guessed (upstream leaves those to be fixed by hand).

Metrics: HSR per level (share of items whose constraints all hold), SSR per level (share of
constraints that hold: for a rule item its one verdict stands for all its constraints, so SSR equals
HSR there), both per constraint file too, and CSL (per example, how many consecutive levels from
level 1 are satisfied, averaged over examples whose five levels all have a verdict).
"""

from __future__ import annotations

import ast
import json
import re
import string
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from spar.io import DataError, read_json

FILES = ("content", "situation", "style", "format", "example", "mixed")
RULE_SOURCES = {"E2E", "WIKIEVENTS", "CONLL2003", "text_editing", "cnn_dailymail", "xsum", "samsum", "gigaword",
                "arxiv", "BBH_logical", "BBH_time", "self_made_space", "gsm_8k"}
FORMAT_IDS = (22, 30)


@dataclass
class Item:
    file: str  # the constraint file (content, situation, style, format, example, mixed)
    example_id: int
    level: int
    source: str
    instruction: str
    target: str
    path: tuple[str, ...] = ()  # the example's instructions of levels 0..level (what the judge is shown)

    @property
    def id(self) -> str:
        return f"{self.file}:{self.example_id}:{self.level}"

    @property
    def rule_checked(self) -> bool:
        return (self.file == "example" or self.source in RULE_SOURCES
                or (self.file == "format" and self.example_id in FORMAT_IDS))


def load_followbench(root: str | Path) -> list[Item]:
    """The scored items (levels 1-5) of the six English constraint files, each with its example's
    constraint-evolution path."""
    items = []
    for name in FILES:
        path = Path(root) / f"{name}_constraints.json"
        if not path.exists():
            raise DataError(f"{path}: no such file (pass --data pointing at FollowBench's data/ folder)")
        rows = read_json(path)
        levels: dict[int, dict[int, str]] = defaultdict(dict)
        parsed = []
        for k, r in enumerate(rows):
            try:
                ex, lv = int(r["example_id"]), int(r["level"])
                levels[ex][lv] = str(r["instruction"])
                parsed.append((ex, lv, str(r["source"]), str(r["instruction"]), str(r["target"])))
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"{path}: row {k}: not a FollowBench item ({type(e).__name__}: {e})") from None
        for ex, lv, source, instruction, target in parsed:
            if lv > 0:
                trail = tuple(levels[ex][j] for j in range(lv + 1) if j in levels[ex])
                items.append(Item(name, ex, lv, source, instruction, target, trail))
    return items


# -- the pieces the rules are made of ---------------------------------------------------------------

def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"[.!?]", text) if s]


def _has_word(text: str, word: str) -> bool:
    return re.search(r"\b" + re.escape(word) + r"\b", text) is not None


def _all_sentences_shorter(text: str, n: int) -> bool:
    return all(len(s.split()) < n for s in _sentences(text))


def _all_sentences_longer(text: str, n: int) -> bool:
    return all(len(s.split()) > n for s in _sentences(text))


def _nth_sentence(text: str, n: int) -> str | None:
    s = _sentences(text)
    return s[n - 1] if len(s) >= n else None


def _nth_has_word(text: str, n: int, word: str) -> bool:
    s = _nth_sentence(text, n)
    return s is not None and _has_word(s, word)


def _present_continuous(text: str) -> bool:
    return re.search(r"\b(am|is|are)\s+\w+ing\b", text) is not None


def _present_perfect(text: str) -> bool:
    return re.search(r"\b(has|have)\s+\w+", text) is not None


def _words(text: str) -> int:
    return len(text.split(" "))  # upstream splits on single spaces


def _last(pattern: str, text: str) -> str | None:
    found = re.findall(pattern, text)
    return found[-1] if found else None


def _levels(checks: list, level: int) -> bool:
    """The first ``level`` checks (each a callable), all true."""
    return all(c() for c in checks[:level])


def _rule(item: Item, g: str) -> bool:
    src, lv, t = item.source, item.level, item.target
    if src in ("E2E", "text_editing"):
        return g == t
    if src == "WIKIEVENTS":
        allowed = t.split("\n")
        return all(line in allowed for line in g.split("\n"))
    if src == "CONLL2003":
        try:
            return g in ast.literal_eval(t)
        except (ValueError, SyntaxError):
            raise DataError(f"FollowBench {item.id}: target is not a Python literal") from None
    if src == "cnn_dailymail":
        return _levels([lambda: len(_sentences(g)) == 3, lambda: _all_sentences_shorter(g, 15),
                        lambda: _nth_has_word(g, 1, "Potter") and _nth_has_word(g, 2, "actor") and _nth_has_word(g, 3, "films"),
                        lambda: not _nth_has_word(g, 2, "lavish"),
                        lambda: (s := _nth_sentence(g, 3)) is not None and _present_perfect(s)], lv)
    if src == "xsum":
        return _levels([lambda: len(_sentences(g)) == 1, lambda: _words(g) < 20, lambda: not _has_word(g, "Newton Stewart"),
                        lambda: _present_continuous(g), lambda: _has_word(g, "operation")], lv)
    if src == "samsum":
        return _levels([lambda: len(_sentences(g)) == 1, lambda: _words(g) < 15, lambda: _has_word(g, "stuff"),
                        lambda: re.search("procrast", g, re.IGNORECASE) is None,
                        lambda: sum(ch in string.punctuation for ch in g) == 1], lv)
    if src == "gigaword":
        return _levels([lambda: _words(g) == 8, lambda: not any(ch in string.punctuation for ch in g), lambda: g.islower(),
                        lambda: not _has_word(g, "bus"), lambda: _has_word(g, "in")], lv)
    if src == "arxiv":
        return _levels([lambda: len(_sentences(g)) == 1, lambda: _words(g) <= 20, lambda: g[:2] == "We",
                        lambda: _has_word(g, "activations"), lambda: not _has_word(g, "transformer")], lv)
    if src == "BBH_logical":
        return _last(r"\([A-Z]\)", g) == t
    if src == "BBH_time":
        return _last(r"\d{2}/\d{2}/\d{4}", g) == t
    if src == "gsm_8k":
        return _last(r"\$\d+", g) == t
    if src == "self_made_space":
        return t in g
    raise AssertionError(src)


def _format_22(g: str, lv: int) -> bool:
    paras = g.split("\n\n")
    # upstream asks for four paragraphs at level 5 (the closing line makes one more) and three below
    count = (lambda: len(paras) == 4) if lv == 5 else (lambda: len(paras) == 3)
    return _levels([count, lambda: all(len(_sentences(p)) < 3 for p in paras[:3]) and len(paras) >= 3,
                    lambda: _all_sentences_longer(g, 20),
                    lambda: all(re.match(r"\d+\.", p.lstrip()) for p in paras if p.lstrip()),
                    lambda: g.endswith("Those are suggestions")], lv)


def _format_30(g: str, lv: int) -> bool:
    sentences = re.split(r"(?<!\w\.\w.)(?<![A-Z][a-z]\.)(?<=\.|\?)\s", g)
    points = [s for s in sentences if any(f"{n}." in s for n in range(1, 6))]
    return _levels([lambda: "**" in g, lambda: len(re.findall(r"\*\*[\d].+?:", g)) == 5,
                    lambda: all(len(s.split(".")) < 3 for s in points),
                    lambda: all(10 <= len(s.split()) <= 15 for s in sentences),
                    lambda: all(not w.endswith("-ly") for s in sentences for w in s.split())], lv)


def _template_match(target: str, g: str) -> bool:
    """The example file's rule: the answer fills the demonstrated template, ``{answer}`` anything."""
    template = target.replace("{instruction}\n", "").replace("{{", "{").replace("}}", "}")
    pattern = ".*".join(re.escape(part) for part in template.split("{answer}"))
    return re.fullmatch(pattern, g) is not None  # "." stops at a newline, as upstream


def check(item: Item, generation: str) -> bool:
    """The rule verdict for one item (all its level's constraints hold)."""
    if item.file == "example":
        return _template_match(item.target, generation)
    if item.file == "format" and item.example_id in FORMAT_IDS:
        return (_format_22 if item.example_id == 22 else _format_30)(generation, item.level)
    if item.source in RULE_SOURCES:
        return _rule(item, generation)
    raise DataError(f"FollowBench {item.id}: not a rule-checked item")


# -- the LLM judge (the 470 items rules do not check) ----------------------------------------------

_KIND = {"content": "content constraint", "situation": "situation constraint (the situation or background the task is set in)",
         "style": "style constraint", "format": "format constraint", "mixed": "constraint"}  # example items: all rule-checked
_LIST = re.compile(r"\[[^\[\]]*\]")


def judge_prompt(item: Item, answer: str) -> str:
    """What the judge is asked for one item: the evolution path, the answer, and a last line with one
    YES or NO per added constraint (spar's wording of the upstream protocol)."""
    n, kind = item.level, _KIND[item.file]
    if len(item.path) != n + 1:
        raise DataError(f"FollowBench {item.id}: its example has no level-0..{n} path to show the judge")
    parts = [f"An instruction was made harder one step at a time: each step added one {kind}.", "",
             "[Starting instruction]", item.path[0], ""]
    for j in range(1, n + 1):
        parts += [f"[After step {j}: {j} constraint{'s' if j > 1 else ''} added]", item.path[j], ""]
    parts += [f"[Answer to the instruction after step {n}]", answer, "",
              f"First name the {n} added constraint{'s' if n > 1 else ''}, one per step. Then decide, for each, whether "
              "the answer satisfies it. On the last line write only a Python list of "
              f"{n} string{'s' if n > 1 else ''}, each \"YES\" or \"NO\", in step order."]
    return "\n".join(parts)


def parse_judge(reply: str, level: int) -> list[bool] | None:
    """One bool per added constraint from the reply's last non-empty line: a list of exactly
    ``level`` "YES"/"NO" strings, any case (a bare YES or NO is accepted at level 1, as upstream does);
    None for anything else. Read with ``ast.literal_eval``, never evaluated."""
    lines = [x for x in reply.strip().splitlines() if x.strip() and not re.fullmatch(r"\s*```\w*\s*", x)]  # fences skipped
    if not lines:
        return None
    last = lines[-1].strip().strip("`*").strip()
    found = _LIST.findall(last)
    if found:
        try:
            got = ast.literal_eval(found[-1])
        except (ValueError, SyntaxError):
            return None
        if isinstance(got, (list, tuple)) and len(got) == level and all(isinstance(x, str) and x.strip().upper() in ("YES", "NO") for x in got):
            return [x.strip().upper() == "YES" for x in got]
        return None
    if level == 1:
        words = set(re.findall(r"\b(YES|NO)\b", last))
        if len(words) == 1:
            return [words.pop() == "YES"]
    return None


def scores(items: list[Item], verdicts: dict[str, bool], soft: dict[str, float] | None = None) -> dict:
    """HSR per level and per file, CSL over fully rule-checked examples, on the items with a verdict."""
    def pct(xs: list[float]) -> float | None:  # bools (HSR) or shares (SSR)
        return round(100 * sum(xs) / len(xs), 2) if xs else None

    def mean(per_level: dict) -> float:
        got = [v for v in per_level.values() if v is not None]
        return round(sum(got) / max(1, len(got)), 2)

    soft = soft or {}
    scored = [it for it in items if it.id in verdicts]
    ssr = {it.id: soft.get(it.id, float(verdicts[it.id])) for it in scored}
    ssr_by_level = {lv: pct([ssr[it.id] for it in scored if it.level == lv]) for lv in range(1, 6)}
    by_level = {lv: pct([verdicts[it.id] for it in scored if it.level == lv]) for lv in range(1, 6)}
    by_file = {f: {lv: pct([verdicts[it.id] for it in scored if it.file == f and it.level == lv]) for lv in range(1, 6)}
               for f in FILES}
    groups: dict[tuple[str, int], dict[int, bool]] = defaultdict(dict)
    for it in scored:
        groups[(it.file, it.example_id)][it.level] = verdicts[it.id]
    csl = []
    for levels in groups.values():
        if set(levels) == {1, 2, 3, 4, 5}:
            n = 0
            while n < 5 and levels[n + 1]:
                n += 1
            csl.append(n)
    return {"items": len(scored), "of": 820, "hsr_by_level": by_level,
            "hsr_mean": mean(by_level),
            "hsr_by_file": by_file, "ssr_by_level": ssr_by_level,
            "ssr_mean": mean(ssr_by_level),
            "ssr_by_file": {f: {lv: pct([ssr[it.id] for it in scored if it.file == f and it.level == lv]) for lv in range(1, 6)}
                            for f in FILES},
            "csl": round(sum(csl) / len(csl), 3) if csl else None, "csl_examples": len(csl)}


def outcome_rows(items: list[Item], answers: dict[str, str], verdicts: dict[str, bool],
                 judged: dict[str, tuple[str, list[bool] | None]] | None = None) -> list[dict]:
    """One row per scored item; a judged item also carries the judge's reply and its per-constraint
    verdicts (null when unparsed)."""
    judged = judged or {}
    rows = []
    for it in items:
        if it.id not in verdicts:
            continue
        row = {"id": it.id, "file": it.file, "example_id": it.example_id, "level": it.level, "source": it.source,
               "checked_by": "judge" if it.id in judged else "rules", "follows": verdicts[it.id], "response": answers[it.id]}
        if it.id in judged:
            row.update(constraints=judged[it.id][1], judge_reply=judged[it.id][0])
        rows.append(row)
    return rows


def answer(backend, items: list[Item], path: str | Path, max_new_tokens: int, chunk: int = 32,
           show: bool = True) -> dict[str, str]:
    """Greedy answers to the items' instructions, appended to ``path`` as they come (a rerun resumes)."""
    from spar.generate import generate_file
    from spar.llm import Sampling
    from spar.types import Message, Prompt

    prompts = [Prompt(id=it.id, messages=[Message(role="user", content=it.instruction)], source="followbench") for it in items]
    rows = generate_file(backend, prompts, path, Sampling(max_new_tokens=max_new_tokens), chunk=chunk, show=show)
    return {r.id: r.completions[0] for r in rows}


def select(root: str | Path, judged: bool, limit: int | None = None) -> list[Item]:
    """The items to score: all 820 with a judge, the 350 rule-checked ones without; the first ``limit``."""
    items = [it for it in load_followbench(root) if it.rule_checked or judged]
    return items[:limit] if limit else items


def evaluate_followbench(items: list[Item], answers: dict[str, str], judge=None, judge_path: str | Path | None = None,
                         judge_max_new_tokens: int = 512, chunk: int = 32, show: bool = True) -> tuple[dict, list[dict]]:
    """Scores and outcome rows for the items that have an answer: rules where they apply, the judge
    backend (its replies kept in ``judge_path``, so a rerun resumes) for the others. Items that need
    the judge are refused when none is given."""
    from spar.generate import generate_file
    from spar.llm import Sampling
    from spar.types import Message, Prompt

    verdicts = {it.id: check(it, answers[it.id]) for it in items if it.rule_checked and it.id in answers}
    to_judge = [it for it in items if not it.rule_checked and it.id in answers]
    if to_judge and (judge is None or judge_path is None):
        raise DataError(f"{len(to_judge)} FollowBench items need an LLM judge and none was given")
    soft: dict[str, float] = {}
    judged: dict[str, tuple[str, list[bool] | None]] = {}
    if to_judge:
        asks = [Prompt(id=it.id, messages=[Message(role="user", content=judge_prompt(it, answers[it.id]))],
                       source="followbench-judge") for it in to_judge]
        replies = {r.id: r.completions[0] for r in generate_file(judge, asks, judge_path, Sampling(max_new_tokens=judge_max_new_tokens),
                                                                  chunk=chunk, show=show)}
        for it in to_judge:
            got = parse_judge(replies[it.id], it.level)
            judged[it.id] = (replies[it.id], got)
            verdicts[it.id] = bool(got) and all(got)
            soft[it.id] = sum(got) / len(got) if got else 0.0
    unparsed = [it for it in to_judge if judged[it.id][1] is None]
    result = {"rule_items": sum(it.rule_checked for it in items if it.id in verdicts), "judged_items": len(to_judge),
              "judge_unparsed": len(unparsed),
              "judge_unparsed_by_level": {lv: sum(it.level == lv for it in unparsed) for lv in range(1, 6)},
              **scores(items, verdicts, soft)}
    return result, outcome_rows(items, answers, verdicts, judged)


def dumps(result: dict) -> str:
    return json.dumps(result, indent=2) + "\n"
