"""Procedural multi-constraint prompts, offline: a seed task plus 1-4 sampled verifiable constraints.

Every constraint kind here has a sampler for its arguments and a renderer that words it as a
natural instruction (spar's own wording). A set is never contradictory: IFEval's conflict table
rules out kinds that cannot share a prompt, and :func:`contradiction` rules out argument clashes
(a word cap too small for the sentences asked for, say). Deterministic for a seed.
"""

from __future__ import annotations

from spar.io import DataError

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spar.constraints.checkers import conflicts
from spar.constraints.seeds import seed_tasks, split_of
from spar.types import Constraint, Message, Prompt

KEYWORDS = ["balance", "journey", "simple", "window", "history", "future", "energy", "garden", "honest", "bright",
            "river", "market", "patience", "signal", "harvest", "courage", "silver", "network", "kindness", "puzzle"]
FORBIDDEN = ["very", "really", "basically", "amazing", "thing", "stuff", "literally", "awesome", "nice", "good"]
LANGUAGES = {"de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "pt": "Portuguese", "fi": "Finnish"}
ENDINGS = ["Let me know if this helps.", "That is all for now.", "Thanks for reading.", "Any other questions?"]
FIRST_WORDS = ["however", "finally", "today", "meanwhile", "overall", "first"]
RARE_LETTERS = ["q", "z", "x", "j"]
COMMON_LETTERS = ["e", "a", "o", "t", "s", "n"]


@dataclass(frozen=True)
class Spec:
    sample: Callable[[random.Random, str], dict[str, Any]]
    render: Callable[[dict[str, Any]], str]


def _rel(rng: random.Random) -> str:
    return rng.choice(["less than", "at least"])


SPECS: dict[str, Spec] = {
    "length_constraints:number_words": Spec(
        lambda r, t: (lambda rel: {"relation": rel, "num_words": r.choice([80, 100, 120, 150]) if rel == "less than"
                                   else r.choice([50, 80, 120, 200])})(_rel(r)),
        lambda k: (f"Keep the whole answer under {k['num_words']} words." if k["relation"] == "less than"
                   else f"Use no fewer than {k['num_words']} words."),
    ),
    "length_constraints:number_sentences": Spec(
        lambda r, t: (lambda rel: {"relation": rel, "num_sentences": r.choice([4, 5, 6, 8]) if rel == "less than"
                                   else r.choice([2, 3, 5])})(_rel(r)),
        lambda k: (f"Write fewer than {k['num_sentences']} sentences in total." if k["relation"] == "less than"
                   else f"Your reply needs {k['num_sentences']} or more sentences."),
    ),
    "length_constraints:number_paragraphs": Spec(
        lambda r, t: {"num_paragraphs": r.choice([2, 3, 4])},
        lambda k: f"Split the answer into exactly {k['num_paragraphs']} paragraphs, putting a line with only *** "
                  "between one paragraph and the next.",
    ),
    "length_constraints:nth_paragraph_first_word": Spec(
        lambda r, t: (lambda n: {"num_paragraphs": n, "nth_paragraph": r.randint(2, n),
                                 "first_word": r.choice(FIRST_WORDS)})(r.choice([2, 3, 4])),
        lambda k: f"Organise the text as {k['num_paragraphs']} paragraphs divided by blank lines; paragraph number "
                  f"{k['nth_paragraph']} has to open with the word \"{k['first_word']}\".",
    ),
    "detectable_format:json_format": Spec(
        lambda r, t: {},
        lambda k: "Format the entire output as valid JSON (a markdown code fence around it is fine).",
    ),
    "detectable_format:number_bullet_lists": Spec(
        lambda r, t: {"num_bullets": r.choice([2, 3, 4, 5])},
        lambda k: f"Present it as a bulleted list of precisely {k['num_bullets']} items, each line starting with \"* \".",
    ),
    "detectable_format:number_highlighted_sections": Spec(
        lambda r, t: {"num_highlights": r.choice([1, 2, 3])},
        lambda k: f"Mark at least {k['num_highlights']} part(s) of the text as highlighted by wrapping them in single "
                  "asterisks, like *this part*.",
    ),
    "detectable_format:multiple_sections": Spec(
        lambda r, t: {"section_spliter": r.choice(["Section", "Part"]), "num_sections": r.choice([2, 3])},
        lambda k: f"Break the answer into {k['num_sections']} sections, each headed \"{k['section_spliter']} 1\", "
                  f"\"{k['section_spliter']} 2\" and so on.",
    ),
    "detectable_content:postscript": Spec(
        lambda r, t: {"postscript_marker": r.choice(["P.S.", "P.P.S"])},
        lambda k: f"Close with an afterthought that begins with {k['postscript_marker']}",
    ),
    "change_case:english_lowercase": Spec(
        lambda r, t: {},
        lambda k: "Do not use a single capital letter anywhere; the reply must be English and entirely lowercase.",
    ),
    "change_case:english_capital": Spec(
        lambda r, t: {},
        lambda k: "Reply in English with every letter written as a capital (all upper case).",
    ),
    "change_case:capital_word_frequency": Spec(
        lambda r, t: (lambda rel: {"capital_relation": rel, "capital_frequency": r.choice([2, 3, 4]) if rel == "less than"
                                   else r.choice([1, 2, 3])})(_rel(r)),
        lambda k: (f"Fully capitalised words (like THIS) may appear fewer than {k['capital_frequency']} times."
                   if k["capital_relation"] == "less than"
                   else f"Stress key ideas with fully capitalised words (like THIS): use {k['capital_frequency']} or more of them."),
    ),
    "detectable_format:title": Spec(
        lambda r, t: {},
        lambda k: "Start with a title placed inside double angle brackets, for example <<a title>>.",
    ),
    "detectable_content:number_placeholders": Spec(
        lambda r, t: {"num_placeholders": r.choice([1, 2, 3])},
        lambda k: f"Leave at least {k['num_placeholders']} fill-in field(s) in square brackets, such as [name].",
    ),
    "startend:end_checker": Spec(
        lambda r, t: {"end_phrase": r.choice(ENDINGS)},
        lambda k: f"The very last words of the reply must be \"{k['end_phrase']}\" with nothing after them.",
    ),
    "startend:quotation": Spec(
        lambda r, t: {},
        lambda k: "Put one pair of double quotes around the full answer.",
    ),
    "punctuation:no_comma": Spec(
        lambda r, t: {},
        lambda k: "Commas are not allowed anywhere in the text.",
    ),
    "keywords:existence": Spec(
        lambda r, t: {"keywords": r.sample(KEYWORDS, r.choice([1, 2]))},
        lambda k: "Work in the word(s) " + " and ".join(f"\"{w}\"" for w in k["keywords"]) + " somewhere.",
    ),
    "keywords:frequency": Spec(
        lambda r, t: (lambda rel: {"keyword": r.choice(KEYWORDS), "relation": rel,
                                   "frequency": r.choice([2, 3]) if rel == "at least" else r.choice([2, 3, 4])})(_rel(r)),
        lambda k: (f"The word \"{k['keyword']}\" has to show up {k['frequency']} or more times."
                   if k["relation"] == "at least"
                   else f"Mention the word \"{k['keyword']}\" fewer than {k['frequency']} times."),
    ),
    "keywords:forbidden_words": Spec(
        lambda r, t: {"forbidden_words": r.sample(FORBIDDEN, r.choice([1, 2, 3]))},
        lambda k: "Avoid these words completely: " + ", ".join(f"\"{w}\"" for w in k["forbidden_words"]) + ".",
    ),
    "keywords:letter_frequency": Spec(
        lambda r, t: (lambda rel: {"let_relation": rel,
                                   "letter": r.choice(RARE_LETTERS) if rel == "less than" else r.choice(COMMON_LETTERS),
                                   "let_frequency": r.choice([3, 5]) if rel == "less than" else r.choice([5, 10, 15])})(_rel(r)),
        lambda k: (f"The letter \"{k['letter']}\" may occur fewer than {k['let_frequency']} times in all."
                   if k["let_relation"] == "less than"
                   else f"Make sure the letter \"{k['letter']}\" occurs {k['let_frequency']} or more times."),
    ),
    "combination:repeat_prompt": Spec(
        lambda r, t: {"prompt_to_repeat": t},
        lambda k: "Before answering, copy the task sentence above word for word, then give your answer.",
    ),
    "combination:two_responses": Spec(
        lambda r, t: {},
        lambda k: "Offer two different versions, separated by a line of exactly six asterisks (******).",
    ),
    "language:response_language": Spec(
        lambda r, t: {"language": r.choice(sorted(LANGUAGES))},
        lambda k: f"Answer only in {LANGUAGES[k['language']]}, with no English.",
    ),
}


def contradiction(a: Constraint, b: Constraint) -> str | None:
    """Why two constraints cannot both be met (IFEval's conflicts, then argument clashes), or None."""
    if b.kind in conflicts(a.kind):
        return f"{a.kind} conflicts with {b.kind}"
    for x, y in ((a, b), (b, a)):
        if x.kind == "length_constraints:number_words" and x.kwargs["relation"] == "less than":
            cap = x.kwargs["num_words"]
            need = {
                "length_constraints:number_sentences": 10 * y.kwargs.get("num_sentences", 0)
                if y.kwargs.get("relation") == "at least" else 0,
                "length_constraints:number_paragraphs": 30 * y.kwargs.get("num_paragraphs", 0),
                "length_constraints:nth_paragraph_first_word": 30 * y.kwargs.get("num_paragraphs", 0),
                "detectable_format:number_bullet_lists": 10 * y.kwargs.get("num_bullets", 0),
                "detectable_format:multiple_sections": 30 * y.kwargs.get("num_sections", 0),
                "combination:repeat_prompt": len(str(y.kwargs.get("prompt_to_repeat", "")).split()) + 30,
                "combination:two_responses": 60,
            }.get(y.kind, 0)
            if need > cap:
                return f"{cap} words are too few for {y.kind} {y.kwargs}"
        if x.kind == "length_constraints:number_sentences" and x.kwargs["relation"] == "less than":
            n = x.kwargs["num_sentences"]
            need = {"length_constraints:number_paragraphs": y.kwargs.get("num_paragraphs", 0),
                    "length_constraints:nth_paragraph_first_word": y.kwargs.get("num_paragraphs", 0),
                    "detectable_format:number_bullet_lists": y.kwargs.get("num_bullets", 0),
                    "detectable_format:multiple_sections": y.kwargs.get("num_sections", 0),
                    "combination:two_responses": 2}.get(y.kind, 0)
            if need >= n:
                return f"fewer than {n} sentences leaves no room for {y.kind} {y.kwargs}"
        if x.kind == "keywords:letter_frequency" and x.kwargs["let_relation"] == "less than":
            words = y.kwargs.get("keywords", []) + [y.kwargs.get("keyword", ""), y.kwargs.get("end_phrase", "")]
            if any(x.kwargs["letter"] in w.lower() for w in words if w):
                return f"letter {x.kwargs['letter']!r} is capped but {y.kind} needs it"
        if x.kind in ("change_case:english_lowercase", "change_case:english_capital") and y.kind in (
            "startend:end_checker", "detectable_content:postscript", "detectable_format:multiple_sections",
            "combination:repeat_prompt", "length_constraints:nth_paragraph_first_word",
        ):
            return f"{x.kind} cannot be met with the fixed wording of {y.kind}"
        if x.kind == "keywords:forbidden_words":
            required = set(y.kwargs.get("keywords", [])) | {y.kwargs.get("keyword")}
            if required & set(x.kwargs["forbidden_words"]):
                return "a word is both required and forbidden"
        if x.kind == "keywords:frequency" and x.kwargs["relation"] == "less than" and x.kwargs["keyword"] in y.kwargs.get("keywords", []):
            return "a word is both required and capped"
    return None


def sample_constraints(rng: random.Random, task: str, k: int, kinds: list[str] | None = None) -> list[Constraint]:
    """k mutually compatible constraints for a task (fewer only if the pool runs dry)."""
    pool = sorted(kinds or SPECS)
    chosen: list[Constraint] = []
    tries = 0
    while len(chosen) < k and tries < 200:
        tries += 1
        kind = rng.choice(pool)
        kw = SPECS[kind].sample(rng, task)
        c = Constraint(kind=kind, kwargs=kw, text=SPECS[kind].render(kw))
        if all(contradiction(c, o) is None for o in chosen):
            chosen.append(c)
    return chosen


def build_prompts(count: int, split: str = "train", seed: int = 0, min_k: int = 1, max_k: int = 4) -> list[Prompt]:
    """``count`` prompts from the split's seed tasks; the same arguments give the same prompts."""
    if split not in ("train", "heldout"):
        raise DataError(f"split must be 'train' or 'heldout', got {split!r}")
    if not 1 <= min_k <= max_k:
        raise DataError(f"the fewest constraints per prompt ({min_k}) must be at least 1 and at most the most "
                        f"({max_k})")
    tasks = [t for _, t in seed_tasks() if split_of(t) == split]
    rng = random.Random(f"{split}:{seed}")
    order = tasks[:]
    rng.shuffle(order)
    out = []
    for i in range(count):
        task = order[i % len(order)]
        cons = sample_constraints(rng, task, rng.randint(min_k, max_k))
        text = task + " " + " ".join(c.text for c in cons)
        out.append(Prompt(id=f"{split}-{seed}-{i:05d}", messages=[Message(role="user", content=text)],
                          constraints=cons, source=f"procedural:{split}"))
    return out


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def contamination(texts: list[str], reference: list[str]) -> tuple[int, str]:
    """The longest run of words (punctuation and case ignored) that any text shares with any
    reference text, and that run."""
    ref = [_words(r) for r in reference]
    grams: dict[int, set[tuple[str, ...]]] = {}

    def ref_grams(n: int) -> set[tuple[str, ...]]:
        if n not in grams:
            grams[n] = {tuple(w[i:i + n]) for w in ref for i in range(len(w) - n + 1)}
        return grams[n]

    best, run = 0, ""
    for t in texts:
        w = _words(t)
        n = best + 1
        while n <= len(w):
            hit = next((w[i:i + n] for i in range(len(w) - n + 1) if tuple(w[i:i + n]) in ref_grams(n)), None)
            if hit is None:
                break
            best, run = n, " ".join(hit)
            n += 1
    return best, run


def rendered_texts() -> list[str]:
    """Every text procedural prompts are made of: seed tasks and each constraint wording."""
    rng = random.Random(0)
    out = [t for _, t in seed_tasks()]
    for spec in SPECS.values():
        for _ in range(8):
            out.append(spec.render(spec.sample(rng, "task")))
    return out
