"""Property-based tests of the judge's verdict parser: it never raises, never guesses, reads only
the verdict line the template asks for, abstains on conflicting verdicts, and stays linear."""

from __future__ import annotations

import time

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from spar.roles.templates import JUDGE, JUDGE_SYSTEM, REFINE, parse_judgement

COUNT = {"cases": 0}
N = 400
# what a small model writes around a verdict: letters, punctuation, markdown, newlines, other scripts
PROSE = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "Zs", "S", "Cc")), max_size=300)
YES_NO = st.sampled_from(["Yes", "No", "yes", "NO", "**Yes**", "No.", "yes!", "**No**."])
HEAD = st.sampled_from(["Final judgement:", "Final Judgment:", "FINAL JUDGEMENT:", "final  judgement :", "**Final judgement:**",
                        "Final judgement："])


def verdict_of(word: str) -> bool:
    return word.strip("*.!").lower() == "yes"


@settings(max_examples=N, deadline=None)
@given(st.text(max_size=500))
def test_never_raises_and_answers_only_yes_no_or_abstain(reply):
    COUNT["cases"] += 1
    assert parse_judgement(reply) in (True, False, None)


@settings(max_examples=N, deadline=None)
@given(PROSE, HEAD, YES_NO, PROSE)
def test_a_verdict_line_is_read_whatever_surrounds_it(before, head, word, after):
    COUNT["cases"] += 1
    assume(parse_judgement(before) is None and parse_judgement(after) is None)
    reply = f"{before}\n{head} {word}\n{after}"
    assert parse_judgement(reply) is verdict_of(word)


@settings(max_examples=N, deadline=None)
@given(PROSE, HEAD, HEAD, PROSE)
def test_conflicting_verdict_lines_are_an_abstention(text, head_a, head_b, more):
    COUNT["cases"] += 1
    assume(parse_judgement(text) is None and parse_judgement(more) is None)
    assert parse_judgement(f"{text}\n{head_a} Yes\n{more}\n{head_b} No") is None
    assert parse_judgement(f"{head_a} No\n{text}\n{head_b} **Yes**") is None


@settings(max_examples=N, deadline=None)
@given(st.text(alphabet=st.characters(categories=("L",)), min_size=1, max_size=40), HEAD, YES_NO,
       st.text(alphabet=st.characters(categories=("L",)), min_size=1, max_size=40))
def test_a_verdict_phrase_inside_a_sentence_is_not_a_verdict(words_before, head, word, words_after):
    COUNT["cases"] += 1
    assert parse_judgement(f"I would say {words_before} {head} {word}") is None
    assert parse_judgement(f"{head} {word} but {words_after}") is None


@settings(max_examples=N // 4, deadline=None)
@given(st.integers(min_value=1_000, max_value=64_000), st.sampled_from([" ", "*", "\t", "x", "final judgement:"]))
def test_the_parser_is_linear_on_long_hostile_replies(n, filler):
    COUNT["cases"] += 1
    t = time.perf_counter()
    parse_judgement("Final judgement:" + filler * n + "Yes")
    parse_judgement(("Final judgement: maybe\n" + filler) * (n // 20))
    assert time.perf_counter() - t < 1.0


def test_the_prompts_echoed_back_are_no_verdict(record):
    for text in (JUDGE_SYSTEM, JUDGE.format(instruction="Say hi.", response="Hi."), REFINE):
        assert parse_judgement(text) is None
    record("fuzz", cases=COUNT["cases"], properties=6)
