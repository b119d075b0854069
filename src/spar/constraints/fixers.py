"""Whole-answer edits that make an answer meet a constraint it did not (the counterpart of
:mod:`spar.constraints.breakers`).

The offline bootstrap of the refiner (:mod:`spar.selfplay.bootstrap`) uses them to widen the kinds it
can teach beyond what a small actor meets unasked (few of its answers are comma-free, all
lowercase or laid out in paragraphs): only edits that invent no content, reusing the answer's own
words and sentences. A fixer returns the answer unchanged when it cannot apply.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from spar.constraints.breakers import split_sentences


def _fix_highlights(text: str, kw: dict[str, Any]) -> str:
    """Wrap the first word of the first n sentences (spread over the answer) in single asterisks."""
    if "*" in text:
        return text
    starts = [m for m in re.finditer(r"(?:^|(?<=[.!?]\s)|(?<=\n))([A-Za-z][A-Za-z'-]+)\b", text)]
    n = kw["num_highlights"]
    if len(starts) < n:
        return text
    picks = [starts[round(i * (len(starts) - 1) / max(1, n - 1))] for i in range(n)] if n > 1 else starts[:1]
    for m in sorted(set(picks), key=lambda m: m.start(), reverse=True):
        text = text[: m.start(1)] + "*" + m.group(1) + "*" + text[m.end(1):]
    return text


def _fix_title(text: str, kw: dict[str, Any]) -> str:
    """A title made of the answer's own first words, in double angle brackets, on a line of its own."""
    words = re.findall(r"[A-Za-z][A-Za-z'-]*", text.split("\n", 1)[0])[:4]
    if "<<" in text or len(words) < 2:
        return text
    return f"<<{' '.join(words).title()}>>\n\n{text.strip()}"


def _fix_postscript(text: str, kw: dict[str, Any]) -> str:
    """The answer's last sentence moved into a postscript with the marker asked for."""
    sentences = split_sentences(text)
    if len(sentences) < 3 or "\n" in sentences[-1]:
        return text
    last = sentences[-1]
    body = text.rstrip()[: -len(last)].rstrip() if text.rstrip().endswith(last) else None
    return text if not body else f"{body}\n\n{kw['postscript_marker']} {last}"


def _structured(text: str) -> bool:
    """Whether the answer already has a layout a structural fixer would mix with (asterisks, list
    dashes, section heads, JSON)."""
    return bool(re.search(r"\*|^\s*-|^\s*(?:section|paragraph)\s?\d", text, flags=re.MULTILINE | re.IGNORECASE)) \
        or text.lstrip().startswith(("{", "["))


def _chunks(text: str, n: int) -> list[str] | None:
    """The answer cut into ``n`` runs of its own units in order: its paragraphs (blank-line separated)
    when it has at least ``n``, else its sentences; None when it has fewer than ``n`` sentences."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    units = paragraphs if len(paragraphs) >= n else split_sentences(" ".join(p.replace("\n", " ") for p in paragraphs))
    if n < 1 or len(units) < n:
        return None
    cuts = [round(i * len(units) / n) for i in range(n + 1)]
    return [" ".join(u.replace("\n", " ") for u in units[a:b]) for a, b in zip(cuts, cuts[1:])]


def _fix_paragraphs(text: str, kw: dict[str, Any]) -> str:
    """The answer's own paragraphs (or sentences) in n runs, a line of *** between one and the next."""
    parts = None if _structured(text) else _chunks(text, kw["num_paragraphs"])
    return text if parts is None else "\n***\n".join(parts)


def _fix_nth_first_word(text: str, kw: dict[str, Any]) -> str:
    """n runs divided by blank lines, the word asked for put at the head of the nth."""
    parts = None if _structured(text) else _chunks(text, kw["num_paragraphs"])
    i, word = kw["nth_paragraph"] - 1, kw["first_word"]
    if parts is None or i >= len(parts):
        return text
    head = parts[i]
    if re.sub(r"[^\w]", "", head.split()[0]).lower() != word.lower():
        parts[i] = word.capitalize() + " " + (head[:1].lower() + head[1:] if head[1:2].islower() else head)
    return "\n\n".join(parts)


def _fix_sections(text: str, kw: dict[str, Any]) -> str:
    """n runs, each under a heading "<splitter> <i>"."""
    parts = None if _structured(text) else _chunks(text, kw["num_sections"])
    return text if parts is None else "\n\n".join(f"{kw['section_spliter']} {i}\n{p}" for i, p in enumerate(parts, 1))


def _fix_bullets(text: str, kw: dict[str, Any]) -> str:
    """n runs of the answer's sentences, one per line, each starting with "* "."""
    parts = None if _structured(text) else _chunks(text, kw["num_bullets"])
    return text if parts is None else "\n".join(f"* {p}" for p in parts)


def _fix_two_responses(text: str, kw: dict[str, Any]) -> str:
    """The answer's first and second half as the two versions, a line of six asterisks between."""
    parts = None if _structured(text) else _chunks(text, 2)
    return text if parts is None else f"{parts[0]}\n******\n{parts[1]}"


def _fix_json(text: str, kw: dict[str, Any]) -> str:
    import json

    return json.dumps({"answer": text.strip()}, ensure_ascii=False)


def _fix_repeat(text: str, kw: dict[str, Any]) -> str:
    prompt = kw["prompt_to_repeat"].strip()
    return text if text.strip().lower().startswith(prompt.lower()) else f"{prompt}\n\n{text.strip()}"


FIXERS: dict[str, Callable[[str, dict[str, Any]], str]] = {
    "length_constraints:number_paragraphs": _fix_paragraphs,
    "length_constraints:nth_paragraph_first_word": _fix_nth_first_word,
    "detectable_format:multiple_sections": _fix_sections,
    "detectable_format:number_bullet_lists": _fix_bullets,
    "combination:two_responses": _fix_two_responses,
    "detectable_format:json_format": _fix_json,
    "combination:repeat_prompt": _fix_repeat,
    "detectable_format:number_highlighted_sections": _fix_highlights,
    "detectable_format:title": _fix_title,
    "detectable_content:postscript": _fix_postscript,
    "punctuation:no_comma": lambda t, kw: re.sub(r",(\s?)", r"\1", t),
    "change_case:english_lowercase": lambda t, kw: t.lower(),
    "change_case:english_capital": lambda t, kw: t.upper(),
    "startend:quotation": lambda t, kw: f'"{t.strip()}"',
    "startend:end_checker": lambda t, kw: t.rstrip() + " " + kw["end_phrase"],
}
