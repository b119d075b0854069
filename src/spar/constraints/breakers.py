"""Break one constraint of an answer with a small programmatic edit.

The offline bootstrap of the refiner (:mod:`spar.selfplay.bootstrap`) takes answers that pass
their checkers, breaks exactly one constraint, and teaches the refiner to restore the original
from the judgment: a minimal edit by construction. Each breaker makes the kind of slip a writer
makes (a comma slipped in, a word capitalised, a placeholder filled in, a forbidden word used, two
paragraphs run together, a closing line dropped); :func:`break_one` keeps an edit only if the
checker now fails that constraint and every other constraint of the prompt still passes.

``language:response_language`` has no breaker: the only way to break it is to translate, which is
no minimal edit. A breaker returns None when the answer offers nothing to break (no comma-free
sentence to put a comma in, one paragraph only, ...).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from spar.constraints.checkers import follows
from spar.types import Constraint

Breaker = Callable[[str, dict[str, Any], random.Random], "str | None"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# words a rare letter may be put in with (letter_frequency "less than")
_WITH_LETTER = {"q": ["quiet", "quick", "quite"], "z": ["lazy", "zone", "crazy"], "x": ["next", "extra", "exact"],
                "j": ["just", "joy", "major"]}


def _pick(rng: random.Random, matches: list[re.Match]) -> re.Match | None:
    return rng.choice(matches) if matches else None


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def _insert_word(text: str, word: str, rng: random.Random) -> str | None:
    """Put ``word`` before a random word in the middle of a sentence."""
    spots = [m for m in re.finditer(r"(?<=[a-z,]) (?=[a-z]{3,})", text)]
    m = _pick(rng, spots)
    return None if m is None else text[: m.end()] + word + " " + text[m.end():]


def _no_comma(text, kw, rng):
    joins = list(re.finditer(r" (?=(?:and|but|so|which|because|while|then) )", text))
    if joins:
        m = rng.choice(joins)
        return text[: m.start()] + "," + text[m.start():]
    spots = list(re.finditer(r"(?<=[a-z]) (?=[a-z]{3,} [a-z])", text))
    m = _pick(rng, spots)
    return None if m is None else text[: m.start()] + "," + text[m.start():]


def _lowercase(text, kw, rng):
    m = _pick(rng, list(re.finditer(r"\b[a-z]{3,}\b", text)))
    return None if m is None else text[: m.start()] + m.group(0).capitalize() + text[m.end():]


def _capital(text, kw, rng):
    m = _pick(rng, list(re.finditer(r"\b[A-Z]{3,}\b", text)))
    return None if m is None else text[: m.start()] + m.group(0).lower() + text[m.end():]


def _capital_words(text, kw, rng):
    n = kw["capital_frequency"]
    caps = list(re.finditer(r"\b[A-Z]{2,}\b", text))
    if kw["capital_relation"] == "less than":  # capitalise words until there are n
        need = n - len(caps)
        words = [m for m in re.finditer(r"\b[a-z]{4,}\b", text)]
        if need <= 0 or len(words) < need:
            return None
        chosen = sorted(rng.sample(words, need), key=lambda m: m.start(), reverse=True)
        for m in chosen:
            text = text[: m.start()] + m.group(0).upper() + text[m.end():]
        return text
    drop = len(caps) - n + 1  # "at least": lower-case until one short
    if drop <= 0:
        return None
    for m in sorted(caps, key=lambda m: m.start(), reverse=True)[:drop]:
        text = text[: m.start()] + m.group(0).lower() + text[m.end():]
    return text


def _placeholders(text, kw, rng):
    found = list(re.finditer(r"\[(.*?)\]", text))
    drop = len(found) - kw["num_placeholders"] + 1
    if drop <= 0 or drop > len(found):
        return None
    for m in sorted(rng.sample(found, drop), key=lambda m: m.start(), reverse=True):
        text = text[: m.start()] + m.group(1) + text[m.end():]  # the field filled in with its own label
    return text


def _forbidden(text, kw, rng):
    return _insert_word(text, rng.choice(kw["forbidden_words"]), rng)


def _drop_word(text: str, word: str, keep: int) -> str:
    """Remove occurrences of ``word`` (whole word, any case) after the first ``keep``."""
    seen = 0

    def sub(m: re.Match) -> str:
        nonlocal seen
        seen += 1
        return m.group(0) if seen <= keep else ""

    out = re.sub(r"\s?\b" + re.escape(word) + r"\b", sub, text, flags=re.IGNORECASE)
    return re.sub(r"^\s+", "", out)


def _existence(text, kw, rng):
    return _drop_word(text, rng.choice(kw["keywords"]), 0)


def _frequency(text, kw, rng):
    word, n = kw["keyword"], kw["frequency"]
    count = lambda t: len(re.findall(re.escape(word), t, flags=re.IGNORECASE))  # noqa: E731 - as IFEval counts
    if kw["relation"] == "at least":  # whole-word uses dropped from the end until one short
        whole = len(re.findall(r"\b" + re.escape(word) + r"\b", text, flags=re.IGNORECASE))
        keep = whole - (count(text) - n + 1)
        return _drop_word(text, word, keep) if count(text) >= n and keep >= 0 else None
    for _ in range(max(0, n - count(text))):
        text = _insert_word(text, word, rng) or text
    return text


def _letters(text, kw, rng):
    if kw["let_relation"] != "less than" or kw["letter"] not in _WITH_LETTER:
        return None  # taking enough letters out of a text is no small edit
    need = kw["let_frequency"] - text.lower().count(kw["letter"])
    for _ in range(max(0, need)):
        word = rng.choice(_WITH_LETTER[kw["letter"]])
        text = _insert_word(text, word, rng) or text
        need -= sum(ch == kw["letter"] for ch in word)
        if need <= 0:
            break
    return text


def _number_words(text, kw, rng):
    n = kw["num_words"]
    sentences = split_sentences(text)
    if kw["relation"] == "less than":  # too long: a sentence said twice, until over the cap
        out = text
        while len(out.split()) < n:
            out = out.rstrip() + " " + rng.choice(sentences)
        return out
    while sentences and len(" ".join(sentences).split()) >= n:  # too short: the last sentences cut
        sentences.pop()
    return " ".join(sentences) if sentences else None


def _number_sentences(text, kw, rng):
    n = kw["num_sentences"]
    sentences = split_sentences(text)
    if kw["relation"] == "less than":
        if not sentences:
            return None
        out = text
        for _ in range(max(1, n - len(sentences))):
            out = out.rstrip() + " " + rng.choice(sentences)
        return out
    return " ".join(sentences[: n - 1]) if len(sentences) >= n and n > 1 else None


def _paragraphs(text, kw, rng):
    seps = list(re.finditer(r"\s?\*\*\*\s?", text))
    m = _pick(rng, seps)
    return None if m is None else text[: m.start()] + " " + text[m.end():]  # two paragraphs run together


def _nth_first_word(text, kw, rng):
    paragraphs = text.split("\n\n")
    i = kw["nth_paragraph"] - 1
    if i >= len(paragraphs) or not paragraphs[i].split():
        return None
    head, _, rest = paragraphs[i].lstrip().partition(" ")
    paragraphs[i] = rest[:1].upper() + rest[1:] if rest else paragraphs[i]
    return "\n\n".join(paragraphs)


def _json(text, kw, rng):
    i = max(text.rfind("}"), text.rfind("]"))  # the closing bracket dropped
    return None if i < 0 else text[:i] + text[i + 1:]


def _bullets(text, kw, rng):
    lines = text.split("\n")
    idx = [i for i, line in enumerate(lines) if re.match(r"^\s*(\*[^*]|-)", line)]
    if not idx:
        return None
    i = rng.choice(idx)
    lines[i] = re.sub(r"^\s*(\*|-)\s*", "", lines[i])  # one item loses its bullet
    return "\n".join(lines)


def _highlights(text, kw, rng):
    found = [m for m in re.finditer(r"(\*{1,2})([^\n*]+)\1", text) if m.group(2).strip()]
    drop = len(found) - kw["num_highlights"] + 1
    if drop <= 0:
        return None
    for m in sorted(rng.sample(found, drop), key=lambda m: m.start(), reverse=True):
        text = text[: m.start()] + m.group(2) + text[m.end():]
    return text


def _sections(text, kw, rng):
    heads = list(re.finditer(r"\s?" + re.escape(kw["section_spliter"]) + r"\s?\d+\s?", text))
    if len(heads) < 2:
        return None
    m = heads[-1]  # the last section runs on from the one before
    return text[: m.start()] + "\n" + text[m.end():]


def _postscript(text, kw, rng):
    pattern = r"\n?\s*p\.\s?p\.\s?s.*$" if kw["postscript_marker"] == "P.P.S" else r"\n?\s*p\.\s?s\..*$"
    out = re.sub(pattern, "", text, flags=re.IGNORECASE | re.MULTILINE | re.DOTALL).rstrip()
    return out if out != text.rstrip() and out else None


def _title(text, kw, rng):
    out = re.sub(r"<<([^\n]+?)>>", r"\1", text)
    return out if out != text else None


def _end(text, kw, rng):
    phrase = kw["end_phrase"]
    body = text.rstrip().rstrip('"')
    if not body.lower().endswith(phrase.lower()):
        return None
    return body[: -len(phrase)].rstrip()


def _quotes(text, kw, rng):
    s = text.strip()
    return s[1:-1].strip() if len(s) > 1 and s[0] == s[-1] == '"' else None


def _two_responses(text, kw, rng):
    return text.replace("******", "\n", 1) if "******" in text else None


def _repeat(text, kw, rng):
    prompt = kw["prompt_to_repeat"].strip()
    if not text.strip().lower().startswith(prompt.lower()):
        return None
    words = prompt.split()
    return text.strip()[len(" ".join(words[: max(1, len(words) // 3)])):].lstrip()  # the copy loses its start


BREAKERS: dict[str, Breaker] = {
    "punctuation:no_comma": _no_comma,
    "change_case:english_lowercase": _lowercase,
    "change_case:english_capital": _capital,
    "change_case:capital_word_frequency": _capital_words,
    "detectable_content:number_placeholders": _placeholders,
    "keywords:forbidden_words": _forbidden,
    "keywords:existence": _existence,
    "keywords:frequency": _frequency,
    "keywords:letter_frequency": _letters,
    "length_constraints:number_words": _number_words,
    "length_constraints:number_sentences": _number_sentences,
    "length_constraints:number_paragraphs": _paragraphs,
    "length_constraints:nth_paragraph_first_word": _nth_first_word,
    "detectable_format:json_format": _json,
    "detectable_format:number_bullet_lists": _bullets,
    "detectable_format:number_highlighted_sections": _highlights,
    "detectable_format:multiple_sections": _sections,
    "detectable_content:postscript": _postscript,
    "detectable_format:title": _title,
    "startend:end_checker": _end,
    "startend:quotation": _quotes,
    "combination:two_responses": _two_responses,
    "combination:repeat_prompt": _repeat,
}


def break_one(text: str, target: Constraint, others: list[Constraint], rng: random.Random, prompt: str | None = None,
              tries: int = 4) -> str | None:
    """``text`` with ``target`` broken and every constraint in ``others`` still met, or None.

    ``text`` must meet all of them to start with; the checker confirms each edit."""
    breaker = BREAKERS.get(target.kind)
    if breaker is None:
        return None
    for _ in range(tries):
        broken = breaker(text, target.kwargs, rng)
        if not broken or broken == text or not broken.strip():
            continue
        if follows(target.kind, target.kwargs, broken, prompt=prompt):
            continue
        if all(follows(c.kind, c.kwargs, broken, prompt=prompt) for c in others):
            return broken
    return None
