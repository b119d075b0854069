"""Every breaker breaks exactly its constraint, confirmed by the checker, and only that one."""

import random
import re

import pytest

from spar.constraints.breakers import BREAKERS, break_one
from spar.constraints.checkers import follows
from spar.constraints.procedural import SPECS
from spar.types import Constraint

STORY = ("The old lighthouse keeper climbed the stairs every night. He cleaned the lamp and watched the sea "
         "while the town slept. One winter a storm broke the glass but he kept the light burning until dawn.")
PARAS = "The harbour was quiet at dawn.\n***\nBoats came back with their nets full.\n***\nBy noon the market was loud."
TASK = "Describe a lighthouse keeper."

# kind -> (kwargs, an answer that meets it)
CASES = {
    "punctuation:no_comma": ({}, STORY),
    "change_case:english_lowercase": ({}, STORY.lower()),
    "change_case:english_capital": ({}, STORY.upper()),
    "change_case:capital_word_frequency": ({"capital_relation": "less than", "capital_frequency": 3}, STORY),
    "detectable_content:number_placeholders": ({"num_placeholders": 2}, "Dear [name], your order [order id] has shipped."),
    "keywords:forbidden_words": ({"forbidden_words": ["very", "nice"]}, STORY),
    "keywords:existence": ({"keywords": ["storm"]}, STORY),
    "keywords:frequency": ({"keyword": "storm", "relation": "at least", "frequency": 2}, STORY + " The storm passed."),
    "keywords:letter_frequency": ({"let_relation": "less than", "letter": "q", "let_frequency": 3}, STORY),
    "length_constraints:number_words": ({"relation": "less than", "num_words": 60}, STORY),
    "length_constraints:number_sentences": ({"relation": "at least", "num_sentences": 3}, STORY),
    "length_constraints:number_paragraphs": ({"num_paragraphs": 3}, PARAS),
    "length_constraints:nth_paragraph_first_word": (
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "however"},
        "The keeper loved his work.\n\nHowever the town forgot him."),
    "detectable_format:json_format": ({}, '{"keeper": "Tom", "years": 40}'),
    "detectable_format:number_bullet_lists": ({"num_bullets": 3}, "Duties:\n* clean the lamp\n* wind the clock\n* log the ships"),
    "detectable_format:number_highlighted_sections": ({"num_highlights": 2}, "He kept *the light* burning through *the storm*."),
    "detectable_format:multiple_sections": (
        {"section_spliter": "Section", "num_sections": 2},
        "Section 1\nThe keeper arrives.\nSection 2\nThe storm comes."),
    "detectable_content:postscript": ({"postscript_marker": "P.S."}, STORY + "\nP.S. The light still burns."),
    "detectable_format:title": ({}, "<<The Keeper>>\n" + STORY),
    "startend:end_checker": ({"end_phrase": "Thanks for reading."}, STORY + " Thanks for reading."),
    "startend:quotation": ({}, '"' + STORY + '"'),
    "combination:two_responses": ({}, "He kept the light.\n******\nThe light kept him."),
    "combination:repeat_prompt": ({"prompt_to_repeat": TASK}, TASK + " " + STORY),
}


def test_every_breaker_has_a_case_and_every_procedural_kind_but_language_has_a_breaker():
    assert set(CASES) == set(BREAKERS)
    assert set(SPECS) - set(BREAKERS) == {"language:response_language"}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_breaker_breaks_its_constraint_and_the_original_is_the_restoration(kind):
    kwargs, text = CASES[kind]
    c = Constraint(kind=kind, kwargs=kwargs)
    assert follows(kind, kwargs, text, prompt=TASK), "the case must meet its constraint to start with"
    for seed in range(3):
        broken = break_one(text, c, [], random.Random(seed), prompt=TASK)
        assert broken is not None and broken != text
        assert not follows(kind, kwargs, broken, prompt=TASK)
        # a small edit: most of the answer is left as it was
        from spar.roles.guard import similarity

        assert similarity(text, broken) >= 0.5, (kind, broken)


def test_a_break_keeps_the_other_constraints_or_is_refused():
    text = STORY.lower()
    no_comma, lower = Constraint(kind="punctuation:no_comma"), Constraint(kind="change_case:english_lowercase")
    # a comma slipped in keeps the answer lowercase
    broken = break_one(text, no_comma, [lower], random.Random(0))
    assert broken is not None and "," in broken and broken == broken.lower()
    # the only way to break "keyword gale present" here is to drop it, which keeps "storm" forbidden-free
    forbid = Constraint(kind="keywords:forbidden_words", kwargs={"forbidden_words": ["storm"]})
    gale = Constraint(kind="keywords:existence", kwargs={"keywords": ["gale"]})
    assert break_one(text.replace("storm", "gale"), gale, [forbid], random.Random(0)) is not None
    # a break that would also break another constraint is refused: every "and" join gets a comma,
    # and the other constraint is "no comma" written as a letter cap on ","
    comma_cap = Constraint(kind="keywords:letter_frequency", kwargs={"let_relation": "less than", "letter": ",", "let_frequency": 1})
    assert break_one(text, no_comma, [comma_cap], random.Random(0)) is None
    # nothing to break: no paragraph separators in a one-paragraph answer
    assert break_one(STORY, Constraint(kind="length_constraints:number_paragraphs", kwargs={"num_paragraphs": 1}), [],
                     random.Random(0)) is None
    # the language constraint has no breaker
    assert break_one(STORY, Constraint(kind="language:response_language", kwargs={"language": "de"}), [], random.Random(0)) is None


@pytest.mark.parametrize("kind,kw", [
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 3}),
    ("detectable_format:title", {}),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}),
])
def test_a_fixer_makes_the_answer_meet_its_constraint_from_the_answers_own_words_and_its_breaker_undoes_it(kind, kw):
    from spar.constraints.fixers import FIXERS

    assert not follows(kind, kw, STORY, prompt=TASK)
    fixed = FIXERS[kind](STORY, kw)
    assert follows(kind, kw, fixed, prompt=TASK)
    assert set(fixed.replace("*", "").replace("<<", " ").replace(">>", " ").split()) - set(STORY.split()) <= {
        kw.get("postscript_marker"), "The", "Old", "Lighthouse", "Keeper"}  # nothing invented
    c = Constraint(kind=kind, kwargs=kw, text=SPECS[kind].render(kw))
    broken = break_one(fixed, c, [], random.Random(0), prompt=TASK)
    assert broken is not None and not follows(kind, kw, broken, prompt=TASK)


@pytest.mark.parametrize("kind,kw", [
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "later"}),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2}),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}),
    ("combination:two_responses", {}),
    ("detectable_format:json_format", {}),
    ("combination:repeat_prompt", {"prompt_to_repeat": TASK}),
])
def test_a_structural_fixer_lays_out_the_answers_own_sentences_in_order_and_its_breaker_undoes_it(kind, kw):
    from spar.constraints.fixers import FIXERS

    assert not follows(kind, kw, STORY, prompt=TASK)
    fixed = FIXERS[kind](STORY, kw)
    assert follows(kind, kw, fixed, prompt=TASK), fixed
    # the words are the answer's, in its order, with only the layout (and a word the constraint names) added
    words = lambda t: re.findall(r"[a-z']+", t.lower())  # noqa: E731
    layout = {"section", "answer", "later", *words(TASK)}
    assert [w for w in words(fixed) if w not in layout or w in words(STORY)] == [w for w in words(STORY)] or kind == "combination:repeat_prompt"
    assert fixed.endswith(STORY.split()[-1]) or kind == "detectable_format:json_format"
    c = Constraint(kind=kind, kwargs=kw, text=SPECS[kind].render(kw))
    broken = break_one(fixed, c, [], random.Random(0), prompt=TASK)
    assert broken is not None and not follows(kind, kw, broken, prompt=TASK)


def test_a_structural_fixer_leaves_an_answer_with_a_layout_or_too_few_sentences_alone():
    from spar.constraints.fixers import FIXERS

    listed = "* one thing\n* another thing\n* a third"
    for kind, kw in [("length_constraints:number_paragraphs", {"num_paragraphs": 2}),
                     ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2}),
                     ("combination:two_responses", {})]:
        assert FIXERS[kind](listed, kw) == listed
    assert FIXERS["detectable_format:number_bullet_lists"]("One sentence only.", {"num_bullets": 3}) == "One sentence only."


def test_a_fixer_that_cannot_apply_leaves_the_answer_as_it_is():
    from spar.constraints.fixers import FIXERS

    short = "Tea. Yes."
    assert FIXERS["detectable_content:postscript"](short, {"postscript_marker": "P.S."}) == short
    assert FIXERS["detectable_format:title"]("<<Tea>> is good", {}) == "<<Tea>> is good"
    assert FIXERS["detectable_format:number_highlighted_sections"]("Some *bold* words here.", {"num_highlights": 1}) == "Some *bold* words here."


LONG = STORY + " The storm came back the next year. The keeper was ready for the storm."


@pytest.mark.parametrize("kind,kw,text", [
    # the other branch of each breaker with a relation (CASES holds one kwargs set per kind)
    ("change_case:capital_word_frequency", {"capital_relation": "at least", "capital_frequency": 2},
     "The OLD keeper climbed the STAIRS and cleaned the LAMP."),
    ("keywords:frequency", {"keyword": "storm", "relation": "less than", "frequency": 3}, STORY),
    ("length_constraints:number_words", {"relation": "at least", "num_words": 40}, LONG),
    ("length_constraints:number_sentences", {"relation": "less than", "num_sentences": 6}, STORY),
    ("detectable_content:number_placeholders", {"num_placeholders": 1}, "Dear [name], your order [order id] has shipped."),
])
def test_the_other_relation_of_a_breaker_breaks_it_too(kind, kw, text):
    assert follows(kind, kw, text, prompt=TASK)
    for seed in range(3):
        broken = break_one(text, Constraint(kind=kind, kwargs=kw), [], random.Random(seed), prompt=TASK)
        assert broken is not None and not follows(kind, kw, broken, prompt=TASK), (seed, broken)


def test_exact_counts_of_the_relation_breakers():
    """One short of "at least", one over "less than": the smallest edit that breaks the count."""
    caps = BREAKERS["change_case:capital_word_frequency"]
    assert caps("The OLD keeper climbed the STAIRS and the LAMP.", {"capital_relation": "at least", "capital_frequency": 2},
                random.Random(0)) == "The OLD keeper climbed the stairs and the lamp."  # the last ones
    out = caps("the keeper climbed stairs nightly", {"capital_relation": "less than", "capital_frequency": 2}, random.Random(0))
    assert len(re.findall(r"\b[A-Z]{2,}\b", out)) == 2
    freq = BREAKERS["keywords:frequency"]
    at_least = freq(STORY + " The storm passed. A storm again.", {"keyword": "storm", "relation": "at least", "frequency": 2},
                    random.Random(0))
    assert at_least.lower().count("storm") == 1
    less = freq(STORY, {"keyword": "storm", "relation": "less than", "frequency": 3}, random.Random(0))
    assert less.lower().count("storm") == 3
    words = BREAKERS["length_constraints:number_words"]
    assert len(words(STORY, {"relation": "less than", "num_words": 60}, random.Random(0)).split()) >= 60
    assert len(words(LONG, {"relation": "at least", "num_words": 40}, random.Random(0)).split()) < 40
    sents = BREAKERS["length_constraints:number_sentences"]
    assert sents(LONG, {"relation": "at least", "num_sentences": 4}, random.Random(0)) == " ".join(re.split(r"(?<=[.!?])\s+", LONG)[:3])
    assert BREAKERS["keywords:letter_frequency"](STORY, {"let_relation": "at least", "letter": "e", "let_frequency": 3},
                                                  random.Random(0)) is None
    ph = BREAKERS["detectable_content:number_placeholders"]
    assert ph("Dear [name], order [id].", {"num_placeholders": 2}, random.Random(0)).count("[") == 1
    assert ph("Dear [name].", {"num_placeholders": 3}, random.Random(0)) is None


def test_break_one_keeps_only_an_edit_the_checker_confirms(monkeypatch):
    """An edit that leaves the target met is never returned, however often the breaker offers it."""
    import spar.constraints.breakers as B

    calls = []

    def harmless(text, kw, rng):  # changes the text but keeps it comma-free
        calls.append(text)
        return text + " Calm."

    monkeypatch.setitem(B.BREAKERS, "punctuation:no_comma", harmless)
    assert break_one(STORY, Constraint(kind="punctuation:no_comma"), [], random.Random(0), tries=3) is None
    assert len(calls) == 3
    monkeypatch.setitem(B.BREAKERS, "punctuation:no_comma", lambda t, kw, rng: t)  # no change at all
    assert break_one(STORY, Constraint(kind="punctuation:no_comma"), [], random.Random(0)) is None
    monkeypatch.setitem(B.BREAKERS, "punctuation:no_comma", lambda t, kw, rng: "  ")  # nothing left
    assert break_one(STORY, Constraint(kind="punctuation:no_comma"), [], random.Random(0)) is None
    offers = iter(["Calm.", "Calm, then."])  # the second offer breaks it: taken on the second try
    monkeypatch.setitem(B.BREAKERS, "punctuation:no_comma", lambda t, kw, rng: next(offers))
    assert break_one(STORY, Constraint(kind="punctuation:no_comma"), [], random.Random(0), tries=2) == "Calm, then."


R = random.Random


@pytest.mark.parametrize("kind,kw,text,expected", [
    # one place to break: the edit is exactly the slip its breaker describes
    ("punctuation:no_comma", {}, "tea calms me and warms my hands", "tea calms me, and warms my hands"),
    ("punctuation:no_comma", {}, "tea calms me", "tea, calms me"),
    ("change_case:english_capital", {}, "HOT tea", "hot tea"),
    ("keywords:existence", {"keywords": ["storm"]}, "Storm came. The STORM went, storming.", "came. The went, storming."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "One.\n***\nTwo.", "One. Two."),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "so"},
     "Intro here.\n\n  so the end came.", "Intro here.\n\nThe end came."),
    ("detectable_format:json_format", {}, '{"a": [1, 2]}', '{"a": [1, 2]'),
    ("detectable_format:json_format", {}, '[{"a": 1}]', '[{"a": 1}'),
    ("detectable_format:number_bullet_lists", {"num_bullets": 1}, "List:\n  * one", "List:\none"),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 3},
     "Section 1\nA.\nSection 2\nB.\nSection 3\nC.", "Section 1\nA.\nSection 2\nB.\nC."),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Body.\n\np.s. later", "Body."),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Body.\nP.S. one\nP.P.S two", "Body.\nP.S. one"),
    ("detectable_format:title", {}, "<<My Title>>\nText <<again>>", "My Title\nText again"),
    ("startend:end_checker", {"end_phrase": "Bye now."}, '"Hello there. bye NOW."  ', '"Hello there.'),
    ("startend:quotation", {}, '  " quoted words "  ', "quoted words"),
    ("combination:two_responses", {}, "A.\n******\nB.\n******\nC.", "A.\n\n\nB.\n******\nC."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem about the sea."}, "write a poem about the sea. Waves.",
     "poem about the sea. Waves."),
])
def test_each_breaker_makes_exactly_its_slip(kind, kw, text, expected):
    assert BREAKERS[kind](text, kw, R(0)) == expected


def test_breakers_with_several_spots_edit_one_and_keep_the_rest():
    caps = BREAKERS["change_case:english_capital"]("HOT TEA IS ON", {}, R(0))
    assert caps in ("hot TEA IS ON", "HOT tea IS ON") and caps != "HOT TEA IS ON"
    assert BREAKERS["change_case:english_capital"]("no caps", {}, R(0)) is None
    low = BREAKERS["change_case:english_lowercase"]("tea is hot", {}, R(0))
    assert low in ("Tea is hot", "tea is Hot")
    # two of three fields filled in with their own labels, whichever two: positions stay right
    for seed in range(5):
        out = BREAKERS["detectable_content:number_placeholders"]("[aa] and [bb] and [cc]", {"num_placeholders": 2}, R(seed))
        assert out.count("[") == 1 and re.fullmatch(r"\[?aa\]? and \[?bb\]? and \[?cc\]?", out), out
    out = BREAKERS["detectable_content:number_placeholders"]("[aa] and [bb] and [cc]", {"num_placeholders": 1}, R(0))
    assert out == "aa and bb and cc"
    assert BREAKERS["detectable_content:number_placeholders"]("[aa]", {"num_placeholders": 2}, R(0)) is None
    assert BREAKERS["detectable_format:json_format"]("no brackets", {}, R(0)) is None
    assert BREAKERS["detectable_format:json_format"]("}", {}, R(0)) == ""
    assert BREAKERS["detectable_format:number_bullet_lists"]("no list", {"num_bullets": 1}, R(0)) is None
    assert BREAKERS["detectable_format:multiple_sections"]("Section 1\nA.", {"section_spliter": "Section", "num_sections": 1},
                                                           R(0)) is None
    assert BREAKERS["detectable_content:postscript"]("P.S. only", {"postscript_marker": "P.S."}, R(0)) is None
    assert BREAKERS["detectable_format:title"]("no title", {}, R(0)) is None
    assert BREAKERS["startend:end_checker"]("Hello.", {"end_phrase": "Bye."}, R(0)) is None
    assert BREAKERS["startend:quotation"]('"', {}, R(0)) is None
    assert BREAKERS["combination:two_responses"]("A.", {}, R(0)) is None
    assert BREAKERS["combination:repeat_prompt"]("Waves.", {"prompt_to_repeat": "Write."}, R(0)) is None
    nth = BREAKERS["length_constraints:nth_paragraph_first_word"]
    assert nth("One.\n\nTwo.", {"nth_paragraph": 3}, R(0)) is None
    assert nth("One.\n\n   ", {"nth_paragraph": 2}, R(0)) is None
    assert nth("One.\n\nAlone", {"nth_paragraph": 2}, R(0)) == "One.\n\nAlone"  # one word: nothing to take away
    paras = BREAKERS["length_constraints:number_paragraphs"]("A.\n***\nB.\n***\nC.", {}, R(0))
    assert paras in ("A. B.\n***\nC.", "A.\n***\nB. C.")
    assert BREAKERS["keywords:frequency"]("storm storm", {"keyword": "storm", "relation": "less than", "frequency": 2},
                                          R(0)) == "storm storm"  # already at the cap: nothing to add
    assert BREAKERS["keywords:frequency"]("one storm", {"keyword": "storm", "relation": "at least", "frequency": 2},
                                          R(0)) is None  # already short of it
    sents = BREAKERS["length_constraints:number_sentences"]
    assert sents("A b. C d.", {"relation": "less than", "num_sentences": 2}, R(0)) in ("A b. C d. A b.", "A b. C d. C d.")
    assert sents("A b. C d.  ", {"relation": "less than", "num_sentences": 4}, R(0)).count(".") == 4
    assert sents("A b. C d.", {"relation": "at least", "num_sentences": 3}, R(0)) is None
    assert sents("A b. C d.", {"relation": "at least", "num_sentences": 1}, R(0)) is None
    assert sents("A b. C d. E f.", {"relation": "at least", "num_sentences": 3}, R(0)) == "A b. C d."
    words = BREAKERS["length_constraints:number_words"]
    longer = words("One two. Three four.", {"relation": "less than", "num_words": 6}, R(0))
    assert longer.split()[:4] == ["One", "two.", "Three", "four."] and len(longer.split()) == 6 and "  " not in longer
    assert words("One two. Three four.", {"relation": "at least", "num_words": 4}, R(0)) == "One two."
    assert words("One two three.", {"relation": "at least", "num_words": 2}, R(0)) is None
