"""FollowBench (English), the items that rules can check.

FollowBench builds each example in five levels, each adding one constraint to the one before. 350
of its 820 scored English items are checked by rules in the upstream evaluation: every item of the
example-constraint file (the answer must fit the demonstrated template), the items whose source
task has a known answer or a countable form (E2E, WIKIEVENTS, CoNLL-2003, text editing, CNN/DM,
XSum, SAMSum, Gigaword, arXiv summaries, BBH logical and date questions, GSM8K, a made-up spatial
task) and two format examples (ids 22 and 30). The rules here follow the upstream semantics,
quirks included (written anew: the upstream code is not copied); the other 470 items need an LLM
judge, which is not built yet.

Metrics on the rule items: HSR per level (share of items whose constraints all hold: a rule gives
one verdict per item, so SSR equals HSR here), per constraint file, and CSL (per example, how many
consecutive levels from level 1 are satisfied, averaged over examples whose five levels are all
rule-checked).
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

    @property
    def id(self) -> str:
        return f"{self.file}:{self.example_id}:{self.level}"

    @property
    def rule_checked(self) -> bool:
        return (self.file == "example" or self.source in RULE_SOURCES
                or (self.file == "format" and self.example_id in FORMAT_IDS))


def load_followbench(root: str | Path) -> list[Item]:
    """The scored items (levels 1-5) of the six English constraint files."""
    items = []
    for name in FILES:
        path = Path(root) / f"{name}_constraints.json"
        if not path.exists():
            raise DataError(f"{path}: no such file (pass --data pointing at FollowBench's data/ folder)")
        rows = read_json(path)
        for k, r in enumerate(rows):
            try:
                if int(r["level"]) > 0:
                    items.append(Item(name, int(r["example_id"]), int(r["level"]), str(r["source"]), r["instruction"],
                                      str(r["target"])))
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"{path}: row {k}: not a FollowBench item ({type(e).__name__}: {e})") from None
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


def scores(items: list[Item], verdicts: dict[str, bool]) -> dict:
    """HSR per level and per file, CSL over fully rule-checked examples, on the items with a verdict."""
    def pct(xs: list[bool]) -> float | None:
        return round(100 * sum(xs) / len(xs), 2) if xs else None

    scored = [it for it in items if it.id in verdicts]
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
            "hsr_mean": round(sum(v for v in by_level.values() if v is not None) / max(1, sum(v is not None for v in by_level.values())), 2),
            "hsr_by_file": by_file, "csl": round(sum(csl) / len(csl), 3) if csl else None, "csl_examples": len(csl)}


def outcome_rows(items: list[Item], answers: dict[str, str], verdicts: dict[str, bool]) -> list[dict]:
    return [{"id": it.id, "file": it.file, "example_id": it.example_id, "level": it.level, "source": it.source,
             "follows": verdicts[it.id], "response": answers[it.id]} for it in items if it.id in verdicts]


def dumps(result: dict) -> str:
    return json.dumps(result, indent=2) + "\n"
