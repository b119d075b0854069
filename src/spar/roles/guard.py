"""Is a refinement still the same answer? The guard beside the judge.

A checker sees its constraint, not the task: "FRYNO GRADUATIVE FORAGEMENTAL…" has no English in
it, so it passes "answer in Portuguese", and "Well done. Final judgement: No" has no comma. A small
refiner that rewrites instead of editing, or echoes its own prompt, produces such texts, and the
checkers accept them. SPaR's premise is a *minimal* correction, so an accepted refinement must
also stay the answer it refines:

- ``similarity``: case-folded rapidfuzz ``ratio`` to the parent at least ``min_similarity``
  (case folded, so that "write it in capitals" is a small edit, as it is);
- ``machinery``: no text of the prompts' own machinery: answer markers, section headers, a verdict
  line, or a run of ``MACHINERY_NGRAM`` words from any template of :mod:`spar.roles.templates`
  (derived from the registry, so a template change updates the guard);
- ``length``: the length within a factor ``max_length_ratio`` of the parent's, either way.

Each failed test is a reason code; a refinement with any is kept in its tree but never accepted,
never expanded, and never the chosen answer of a pair.
"""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass

from spar.roles import templates as T
from spar.settings import GuardConfig  # noqa: F401  (the guard's settings live with the others)

REASONS = ("similarity", "machinery", "length")
# Word n-grams of the templates' prose. 4 words: no answer among the actor's samples or the
# accepted refinements of a demo run carries one unless it echoes a prompt (measured, README);
# 3-grams flag phrases such as "the task itself" that ordinary answers use.
MACHINERY_NGRAM = 4


def similarity(a: str, b: str) -> float:
    """rapidfuzz ``ratio`` / 100 of the case-folded texts (1 = identical up to case)."""
    from rapidfuzz import fuzz

    return fuzz.ratio(a.casefold(), b.casefold()) / 100.0


def length_ratio(parent: str, child: str) -> float:
    """len(child) / len(parent) in characters (inf for an empty parent and a non-empty child)."""
    if not parent:
        return 1.0 if not child else float("inf")
    return len(child) / len(parent)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


@functools.cache
def _machinery() -> tuple[re.Pattern, frozenset[tuple[str, ...]]]:
    """The markers, headers and verdict pattern, and the template n-grams, from the registry."""
    prose = [T.JUDGE_SYSTEM, T.JUDGE, T.REFINE, T.EVOLVE, T.EVOLVE_CHECK, T.FALLBACK_RATIONALE, T.CHECKLIST_HEAD,
             T.REWARD, T.META_JUDGE]
    fields = {name for tpl in prose for _, name, _, _ in string.Formatter().parse(tpl) if name}
    # answer markers with one or two brackets ("[end]" is the same slip as "[[end]]")
    names = [m.strip("[]") for m in (T.START, T.END)]
    marker = r"\[\[?\s*(?:" + "|".join(map(re.escape, names)) + r")\s*\]\]?"
    # section headers such as "[Instruction]", but not the templates' own fields
    headers = sorted({h for tpl in prose for h in re.findall(r"^\[([A-Za-z ]+)\]$", tpl, re.M)} - fields)
    header = r"^\s*\[(?:" + "|".join(map(re.escape, headers)) + r")\]" if headers else r"(?!x)x"
    # the parsers' own patterns: whatever they read as a verdict, a score or a winner
    verdict = "|".join(p.pattern for p in (T._FINAL, T._SCORE, T._WINNER))  # noqa: SLF001
    # the checker rationale's head line and its "- met:" / "- NOT met:" items
    checklist = re.escape(T.CHECKLIST_HEAD) + r"|^\s*-\s*(?:" + "|".join(map(re.escape, (T.CHECK_NOT_MET, T.CHECK_MET))) + r")\s*:"
    pattern = re.compile(f"{marker}|{header}|{verdict}|{checklist}", re.IGNORECASE | re.MULTILINE)
    n = MACHINERY_NGRAM
    grams = set()
    for tpl in prose:
        for part in re.split(r"\{[a-z_]+\}", tpl):  # an n-gram never spans a field
            w = _words(part)
            grams.update(tuple(w[i:i + n]) for i in range(len(w) - n + 1))
    return pattern, frozenset(grams)


def machinery(text: str) -> str | None:
    """The first piece of prompt machinery found in ``text``, or None."""
    pattern, grams = _machinery()
    m = pattern.search(text)
    if m:
        return m.group(0)
    w = _words(text)
    n = MACHINERY_NGRAM
    for i in range(len(w) - n + 1):
        if tuple(w[i:i + n]) in grams:
            return " ".join(w[i:i + n])
    return None


@dataclass(frozen=True)
class Verdict:
    reasons: tuple[str, ...]  # failed tests, a subset of REASONS in that order; empty = faithful
    similarity: float
    length_ratio: float
    machinery: str | None  # what was found, if anything

    @property
    def ok(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict:
        return {"guard": list(self.reasons), "similarity": round(self.similarity, 4),
                "length_ratio": round(self.length_ratio, 4), "machinery": self.machinery}


def check(parent: str, child: str, cfg: GuardConfig = GuardConfig()) -> Verdict:
    sim, ratio = similarity(parent, child), length_ratio(parent, child)
    found = machinery(child) if cfg.machinery else None
    reasons = []
    if sim < cfg.min_similarity:
        reasons.append("similarity")
    if found is not None:
        reasons.append("machinery")
    if not 1 / cfg.max_length_ratio <= ratio <= cfg.max_length_ratio:
        reasons.append("length")
    return Verdict(reasons=tuple(reasons), similarity=sim, length_ratio=ratio, machinery=found)
