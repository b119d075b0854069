"""What an answer has, in the terms of a failed check: "found 2 paragraphs separated by ***; 3
asked". A checker says only yes or no; a small refiner told "Not met: exactly 3 paragraphs" hands
the answer back unchanged (issue 27: 22 of 23 held-out paragraph, section and first-word breaks),
because it cannot count where the missing separator is. A finding gives it the count, or the word,
the check saw.

Counts follow IFEval's own checkers (``if_verifiable.ifeval.instructions``): the same splits,
patterns and tokenisers, so a finding never disagrees with the verdict it explains. Kinds without
a useful count (the language, a title, quotation marks) have no finding.
"""

from __future__ import annotations

import collections
import json
import re
from typing import Any


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _words(text: str) -> int:
    return len(re.findall(r"\w+", text))  # nltk's RegexpTokenizer(r"\w+"), as IFEval counts words


def _sentences(text: str) -> int:
    from if_verifiable.ifeval import instructions_util

    from spar.constraints.checkers import _registry

    _registry()  # (once) points IFEval's sentence counter at the Punkt tokenizer spar's checkers use
    return instructions_util.count_sentences(text)


def _tokens(text: str) -> list[str]:
    from if_verifiable.ifeval import instructions_util

    from spar.constraints.checkers import _registry

    _registry()
    return instructions_util.nltk.word_tokenize(text)


def _first_word(paragraph: str) -> str:
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"') if paragraph.split() else ""
    out = ""
    for ch in word:
        if ch in {".", ",", "?", "!", "'", '"'}:
            break
        out += ch.lower()
    return out


def _relation(rel: str, n: int) -> str:
    return f"{'fewer than' if rel == 'less than' else 'at least'} {n}"


def finding(kind: str, kwargs: dict[str, Any], response: str) -> str | None:
    """A short phrase of what ``response`` has for the constraint (``kind``, ``kwargs``): what was
    found and what was asked; None for kinds without one."""
    k = kwargs
    if kind == "length_constraints:number_paragraphs":
        parts = re.split(r"\s?\*\*\*\s?", response)
        want = len(parts), k["num_paragraphs"]
        inner = sum(not p.strip() for p in parts[1:-1])  # an empty paragraph between two *** fails the check
        n = len(parts) - (not parts[0].strip()) - (len(parts) > 1 and not parts[-1].strip())  # empty ends do not count
        extra = f" and {_plural(inner, 'empty paragraph')} between two ***" if inner else ""
        return f"found {_plural(n, 'paragraph')} separated by ***{extra}; {want[1]} asked, so {want[1] - 1} *** separators"
    if kind == "length_constraints:nth_paragraph_first_word":
        paragraphs = [p for p in re.split(r"\n\n", response) if p.strip()]
        n, nth = len(paragraphs), k["nth_paragraph"]
        got = f"; paragraph {nth} starts with \"{_first_word(paragraphs[nth - 1])}\"" if nth <= n else ""
        return (f"found {_plural(n, 'paragraph')} separated by blank lines{got}; {k['num_paragraphs']} asked, "
                f"paragraph {nth} starting with \"{k['first_word']}\"")
    if kind == "detectable_format:multiple_sections":
        marker = k["section_spliter"]
        n = len(re.split(r"\s?" + marker + r"\s?\d+\s?", response)) - 1
        return f"found {_plural(n, 'section')} headed \"{marker} N\"; at least {k['num_sections']} asked"
    if kind == "detectable_format:number_bullet_lists":
        n = len(re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)) + \
            len(re.findall(r"^\s*-.*$", response, flags=re.MULTILINE))
        return f"found {_plural(n, 'bullet point')} (lines starting with * or -); exactly {k['num_bullets']} asked"
    if kind == "detectable_format:number_highlighted_sections":
        n = sum(bool(h.strip("*").strip()) for h in re.findall(r"\*[^\n\*]*\*", response))
        n += sum(bool(h.removeprefix("**").removesuffix("**").strip()) for h in re.findall(r"\*\*[^\n\*]*\*\*", response))
        return f"found {_plural(n, 'highlighted section')} (*like this*); at least {k['num_highlights']} asked"
    if kind == "detectable_content:number_placeholders":
        n = len(re.findall(r"\[.*?\]", response))
        return f"found {_plural(n, 'placeholder')} in square brackets; at least {k['num_placeholders']} asked"
    if kind == "length_constraints:number_words":
        return f"found {_plural(_words(response), 'word')}; {_relation(k['relation'], k['num_words'])} asked"
    if kind == "length_constraints:number_sentences":
        return f"found {_plural(_sentences(response), 'sentence')}; {_relation(k['relation'], k['num_sentences'])} asked"
    if kind == "change_case:capital_word_frequency":
        n = sum(w.isupper() for w in _tokens(response))
        return f"found {_plural(n, 'fully capitalised word')}; {_relation(k['capital_relation'], k['capital_frequency'])} asked"
    if kind == "keywords:letter_frequency":
        n = collections.Counter(response.lower())[k["letter"].lower()]
        return f"found the letter \"{k['letter']}\" {_plural(n, 'time')}; {_relation(k['let_relation'], k['let_frequency'])} asked"
    if kind == "keywords:frequency":
        n = len(re.findall(k["keyword"], response, flags=re.IGNORECASE))
        return f"found \"{k['keyword']}\" {_plural(n, 'time')}; {_relation(k['relation'], k['frequency'])} asked"
    if kind == "keywords:existence":
        missing = [w for w in k["keywords"] if not re.search(w, response, flags=re.IGNORECASE)]
        return f"missing: {', '.join(missing)}" if missing else None
    if kind == "keywords:forbidden_words":
        found = [w for w in k["forbidden_words"] if re.search(r"\b" + w + r"\b", response, flags=re.IGNORECASE)]
        return f"found the forbidden word(s): {', '.join(found)}" if found else None
    if kind == "punctuation:no_comma":
        return f"found {_plural(response.count(','), 'comma')}; none allowed"
    if kind == "change_case:english_lowercase":
        caps = sorted({w for w in re.findall(r"\w+", response) if not w.islower() and any(c.isupper() for c in w)})
        return f"found capital letters in: {', '.join(caps[:5])}{' ...' if len(caps) > 5 else ''}" if caps else None
    if kind == "change_case:english_capital":
        low = sorted({w for w in re.findall(r"\w+", response) if any(c.islower() for c in w)})
        return f"found lowercase letters in: {', '.join(low[:5])}{' ...' if len(low) > 5 else ''}" if low else None
    if kind == "startend:end_checker":
        tail = " ".join(response.strip().split()[-6:])
        return f"the answer ends with \"{tail}\"; it must end with \"{k['end_phrase']}\""
    if kind == "detectable_content:postscript":
        marker = k["postscript_marker"]
        return f"no line starts with \"{marker}\"" if marker.lower() not in response.lower() else None
    if kind == "detectable_format:json_format":
        text = response.strip().removeprefix("```json").removeprefix("```Json").removeprefix("```JSON")
        text = text.removeprefix("```").removesuffix("```").strip()
        try:
            json.loads(text)
        except ValueError as e:
            return f"not valid JSON ({str(e).split(':')[0]})"
        return None
    return None


def requirement(text: str, kind: str, kwargs: dict[str, Any], response: str, met: bool, findings: bool) -> str:
    """A checklist line's requirement: the constraint's text, and for an unmet one (``findings``
    on) what the answer has."""
    if met or not findings:
        return text
    try:
        found = finding(kind, kwargs, response)
    except (KeyError, IndexError, TypeError, re.error):  # kwargs of another shape: the text alone
        found = None
    return f"{text} ({found})" if found else text
