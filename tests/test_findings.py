"""What a failed check found: the counts agree with the checkers' verdicts (the finding never
contradicts the verdict it explains), and the judge and the bootstrap say it only when asked."""

import random
import re

import pytest

from spar.constraints.checkers import follows
from spar.constraints.findings import finding, requirement

# kind, kwargs, how the verdict follows from the first number of the finding
COUNTED = [
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, lambda n, f: n == 3 and "empty" not in f),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, lambda n, f: n == 2),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2}, lambda n, f: n >= 2),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, lambda n, f: n >= 2),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, lambda n, f: n >= 2),
    ("length_constraints:number_words", {"relation": "less than", "num_words": 12}, lambda n, f: n < 12),
    ("length_constraints:number_sentences", {"relation": "at least", "num_sentences": 3}, lambda n, f: n >= 3),
    ("keywords:letter_frequency", {"let_relation": "at least", "letter": "z", "let_frequency": 3}, lambda n, f: n >= 3),
    ("keywords:frequency", {"keyword": "river", "relation": "less than", "frequency": 2}, lambda n, f: n < 2),
    ("change_case:capital_word_frequency", {"capital_relation": "at least", "capital_frequency": 2}, lambda n, f: n >= 2),
    ("punctuation:no_comma", {}, lambda n, f: n == 0),
]
PIECES = ["Zig zag river.", "***", "\n\n", "* point", "- dash", "Section 1", "Section 2", "[name]", "*bold*",
          "**strong**", "NOW", "OK", "a, b", "The river ran.", "Quiet.", "\n"]


def _texts(seed: int, n: int = 60) -> list[str]:
    rng = random.Random(seed)
    made = [" ".join(rng.choice(PIECES) for _ in range(rng.randint(1, 9))).strip() or "x" for _ in range(n)]
    return made + ["* one point\n- two", "One river.\n***\nTwo.\n***\nThree.", "*** One.\n***\nTwo.\n***\nThree. ***", "One.\n***\n***\nTwo.\n***\nThree."]


@pytest.mark.parametrize("kind,kwargs,holds", COUNTED, ids=[c[0] for c in COUNTED])
def test_a_findings_count_agrees_with_the_checkers_verdict(kind, kwargs, holds):
    seen = set()
    for text in _texts(hash(kind) % 1000):
        found = finding(kind, kwargs, text)
        n = int(re.search(r"(\d+) (?:time|[a-z])", found.removeprefix(f'found the letter "{kwargs.get("letter")}" ')
                          .removeprefix(f'found "{kwargs.get("keyword")}" ')).group(1)) if "found" in found else None
        assert n is not None, (text, found)
        assert holds(n, found) == follows(kind, kwargs, text), (kind, text, found)
        seen.add(holds(n, found))
    assert seen == {True, False}, kind  # both verdicts were tried


def test_word_findings_name_what_is_wrong():
    assert finding("keywords:forbidden_words", {"forbidden_words": ["nice", "good"]}, "a nice day") == \
        "found the forbidden word(s): nice"
    assert finding("keywords:existence", {"keywords": ["bright", "river"]}, "a bright day") == "missing: river"
    assert finding("change_case:english_lowercase", {}, "hello World") == "found capital letters in: World"
    assert finding("startend:end_checker", {"end_phrase": "Bye."}, "It was. The end.") == \
        'the answer ends with "It was. The end."; it must end with "Bye."'
    p = finding("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "today"},
                "A b.\n\nYesterday c.\n\nD.")
    assert p == ('found 3 paragraphs separated by blank lines; paragraph 2 starts with "yesterday"; 3 asked, '
                 'paragraph 2 starting with "today"')
    assert finding("detectable_format:title", {}, "no title") is None  # no count to give
    # a met line, findings off, or kwargs of another shape: the constraint's text alone
    assert requirement("Use 3 paragraphs.", "length_constraints:number_paragraphs", {"num_paragraphs": 3}, "a", True, True) \
        == "Use 3 paragraphs."
    assert requirement("T", "length_constraints:number_paragraphs", {"num_paragraphs": 3}, "a", False, False) == "T"
    assert requirement("T", "length_constraints:number_paragraphs", {}, "a", False, True) == "T"
    assert requirement("T", "length_constraints:number_paragraphs", {"num_paragraphs": 3}, "a", False, True) == \
        "T (found 1 paragraph separated by ***; 3 asked, so 2 *** separators)"


def test_the_judge_says_findings_only_when_asked():
    from spar.roles.judge import combine
    from spar.types import Constraint, Message, Prompt

    c = Constraint(kind="length_constraints:number_paragraphs", kwargs={"num_paragraphs": 3},
                   text="Write exactly 3 paragraphs separated by ***.")
    p = Prompt(id="a", messages=[Message(role="user", content="Tell me. " + c.text)], constraints=[c])
    plain = combine(p, "One.\n***\nTwo.", [], "verifier")
    told = combine(p, "One.\n***\nTwo.", [], "verifier", findings=True)
    assert not plain.follows and not told.follows and plain.score == told.score
    assert "found" not in plain.rationale
    assert "(found 2 paragraphs separated by ***; 3 asked, so 2 *** separators)" in told.rationale


def test_the_bootstrap_checklists_carry_findings_when_asked():
    from spar.selfplay import bootstrap as B
    from spar.types import Completion, Message

    answer = ("The garden was quiet in the morning light. Birds sang in the old oak tree near the gate. "
              "We walked slowly along the river path. The water was calm and clear. Later we rested on a bench.")
    from spar.constraints.procedural import SPECS
    from spar.types import Constraint

    kw = {"keywords": ["river"]}
    own = Constraint(kind="keywords:existence", kwargs=kw, text=SPECS["keywords:existence"].render(kw))
    rows = [Completion(id=f"r{i}", prompt=[Message(role="user", content="Describe a walk. " + own.text)],
                       completions=[answer], constraints=[own]) for i in range(6)]
    kinds = ("length_constraints:number_paragraphs",)
    plain, _ = B.offline_examples(rows, B.BootstrapConfig(kinds=kinds, extra=1, eval_share=0.0))
    told, _ = B.offline_examples(rows, B.BootstrapConfig(kinds=kinds, extra=1, eval_share=0.0, findings=True))
    assert plain and len(plain) == len(told)
    for a, b in zip(plain, told):
        assert a.broken == b.broken and "found" not in a.rationale
        unmet = [t for t, ok in b.checks if not ok]
        assert len(unmet) == 1 and "found" in unmet[0] and "separated by ***" in unmet[0]


def test_a_checkers_judgment_can_be_told_its_findings_a_votes_cannot():
    from spar.roles.judge import combine, with_findings
    from spar.types import Constraint, Message, Prompt

    c = Constraint(kind="punctuation:no_comma", kwargs={}, text="Use no commas.")
    p = Prompt(id="a", messages=[Message(role="user", content="Tell me. Use no commas.")], constraints=[c])
    j = combine(p, "a, b, c", [], "verifier")
    told = with_findings(j, p, "a, b, c")
    assert told.rationale == combine(p, "a, b, c", [], "verifier", findings=True).rationale
    assert "(found 2 commas; none allowed)" in told.rationale and told.follows == j.follows
    voted = j.model_copy(update={"rationale": "The answer uses commas.", "rationale_from_vote": True})
    assert with_findings(voted, p, "a, b, c") == voted
