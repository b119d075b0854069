"""The guard: an accepted refinement must stay the same answer as its parent."""

import re

import pytest

from fake import FakeBackend
from spar.roles import guard as G
from spar.roles import templates as T
from spar.settings import JudgeSettings
from spar.search.driver import Searcher
from spar.settings import SearchSettings
from spar.selfplay.data import dpo_pairs, search_stats
from spar.types import Judgment, Message, Negative, Node, Prompt, Tree

ANSWER = ("Green tea is picked young, steamed quickly and rolled, which keeps its colour, its grassy smell "
          "and most of its gentle bitterness. Brew it below boiling for two minutes.")


def _sentences(template: str) -> list[str]:
    parts = re.split(r"\{[a-z_]+\}", template)
    return [s.strip() for p in parts for s in re.split(r"(?<=[.!?])\s+", p) if len(s.split()) >= G.MACHINERY_NGRAM]


@pytest.mark.parametrize("template", [T.JUDGE_SYSTEM, T.JUDGE, T.REFINE, T.EVOLVE, T.EVOLVE_CHECK, T.FALLBACK_RATIONALE])
def test_every_sentence_of_every_template_is_machinery(template):
    sentences = _sentences(template)
    assert sentences
    for s in sentences:
        assert G.machinery(ANSWER + " " + s) is not None, s


@pytest.mark.parametrize("text", [
    "Well done. [post]\nFinal judgement: No",
    "Tea is nice.\nFinal Judgment: **Yes**",
    "[[start]] Tea is nice.",
    "[end] **End summary of the response**",
    "[Instruction]\nWrite about tea.",
    "Rewrite the response so that it follows the instruction completely. Justly done. End.",
    T.CHECKLIST_HEAD + "\n- met: no commas",
])
def test_machinery_found(text):
    assert G.machinery(text) is not None


@pytest.mark.parametrize("text", [
    ANSWER,
    "Dear [name], thank you for your order. The response time of our team is one day.",
    "Here is my answer: tea is calming. Let me know if this helps.",
    "The instruction manual says to steep the leaves; the final judgement is yours.",
])
def test_ordinary_answers_are_not_machinery(text):
    assert G.machinery(text) is None


def test_machinery_is_derived_from_the_registry(monkeypatch):
    odd = "Polish the kettle of prose until every teaspoon gleams brightly."
    assert G.machinery(ANSWER + " " + odd) is None
    monkeypatch.setattr(T, "REFINE", T.REFINE + " " + odd)
    G._machinery.cache_clear()
    try:
        assert G.machinery(ANSWER + " " + odd) is not None
    finally:
        monkeypatch.undo()
        G._machinery.cache_clear()


def test_thresholds():
    cfg = G.GuardConfig(min_similarity=0.5, max_length_ratio=2.0)
    assert G.check(ANSWER, ANSWER.replace(",", ""), cfg).ok
    assert G.check(ANSWER, ANSWER.upper(), cfg).ok  # a case change is a small edit
    far = G.check(ANSWER, "FRYNO GRADUATIVE FORAGEMENTAL ON SURVIVING SAICA.", cfg)
    assert set(far.reasons) == {"similarity", "length"} and far.similarity < 0.5
    longer = G.check(ANSWER, ANSWER + " " + ANSWER + " " + ANSWER[:20], cfg)
    assert "length" in longer.reasons and longer.length_ratio > 2.0
    assert G.check(ANSWER, ANSWER + " " + ANSWER + " " + ANSWER[:20], G.GuardConfig(0.5, 3.0)).ok
    echo = G.check(ANSWER, ANSWER + "\nFinal judgement: Yes", cfg)
    assert echo.reasons == ("machinery",) and echo.machinery.lower().startswith("final judgement")
    assert G.check(ANSWER, ANSWER + "\nFinal judgement: Yes", G.GuardConfig(machinery=False)).ok
    with pytest.raises(ValueError):
        G.GuardConfig(min_similarity=1.5)


# -- in the search ---------------------------------------------------------------------------------

NO_COMMA_PROMPT = Prompt(id="p", messages=[Message(role="user", content="Describe green tea. Do not use commas.")])


def _negative():
    return Negative(prompt=NO_COMMA_PROMPT, index=0, response=ANSWER,
                    judgment=Judgment(follows=False, votes=[False] * 3, rationale="It has commas.\nFinal judgement: No"))


def _searcher(children: list[str], yes: set[str], guard=True):
    """The refiner writes ``children`` in order; the judge says yes to the texts in ``yes``."""

    def script(chat, sampling, k):
        if chat[-1]["role"] == "assistant":  # the refine prefill
            return children[k] + "[[end]]"
        resp = re.search(r"\[Response\]\n(.*?)\n\nFirst say", chat[-1]["content"], re.S).group(1)
        return "Final judgement: Yes" if resp in yes else "Final judgement: No"

    return Searcher(FakeBackend(script), JudgeSettings(votes=3, mode="llm"),
                    SearchSettings(strategy="bfs", branch=3, depth=1, budget=3, guard=guard))


def test_a_rewrite_the_judge_accepts_is_kept_with_its_reason_but_never_chosen():
    edit = ANSWER.replace(",", "")
    echo = edit + " Rewrite the response so that it follows the instruction completely."
    offtask = "FRYNO GRADUATIVE FORAGEMENTAL ON SURVIVING SAICA."
    (tree,) = _searcher([echo, offtask, edit], yes={echo, offtask, edit}).run([_negative()])
    kids = {n.response: n for n in tree.nodes[1:]}
    assert kids[echo].guard == ["machinery"] and "similarity" in kids[offtask].guard and kids[edit].guard == []
    assert kids[echo].judgment.follows and kids[offtask].judgment.follows  # the judge said yes to both
    assert tree.solved and tree.nodes[tree.solution].response == edit
    st = search_stats([tree])
    assert st.refinements == 3 and st.judged_yes == 3 and st.guard_rejected_judged_yes == 2
    assert st.guard_rejected == {"similarity": 1, "machinery": 1, "length": 1}


def test_without_a_faithful_refinement_the_tree_stays_unsolved_and_the_guard_can_be_switched_off():
    offtask = "FRYNO GRADUATIVE FORAGEMENTAL ON SURVIVING SAICA."
    (tree,) = _searcher([offtask] * 3, yes={offtask}).run([_negative()])
    assert not tree.solved and all(n.guard for n in tree.nodes[1:])
    (tree,) = _searcher([offtask] * 3, yes={offtask}, guard=False).run([_negative()])
    assert tree.solved and all(n.guard == [] and n.similarity is None for n in tree.nodes[1:])


def test_pairs_carry_their_quality_and_a_drifted_chosen_answer_is_dropped():
    yes = Judgment(follows=True, votes=[True] * 3)
    no = Judgment(follows=False, votes=[False] * 3)

    def tree(tid, chosen):
        nodes = [Node(id=0, parent=None, depth=0, response=ANSWER, judgment=no),
                 Node(id=1, parent=0, depth=1, response=chosen, judgment=yes, reply=chosen)]
        return Tree(id=tid, prompt_id="p", nodes=nodes, solved=True, expanded=1, strategy="bfs", solution=1)

    drifted = "Tea. " + ANSWER[:40]
    pairs, dropped = dpo_pairs([tree("p#0", ANSWER.replace(",", "")), tree("p#1", drifted)], {"p": NO_COMMA_PROMPT})
    assert len(pairs) == 1 and pairs[0].origin["guard"] == [] and pairs[0].origin["machinery"] is None
    assert 0.9 < pairs[0].origin["similarity"] < 1 and 0.9 < pairs[0].origin["length_ratio"] < 1
    assert [d["tree"] for d in dropped] == ["p#1"] and "similarity" in dropped[0]["guard"]
    kept, none = dpo_pairs([tree("p#1", drifted)], {"p": NO_COMMA_PROMPT}, guard=None)
    assert len(kept) == 1 and none == [] and kept[0].origin["guard"] == []
    st = search_stats([tree("p#0", ANSWER.replace(",", "")), tree("p#1", drifted)], pairs=pairs, dropped=dropped)
    assert st.pairs == 1 and st.pairs_dropped == 1 and len(st.pair_similarity_quartiles) == 5


def test_four_word_runs_flag_none_of_a_real_sample_stage_and_three_word_runs_would(monkeypatch):
    """The README's reason for MACHINERY_NGRAM = 4, on the committed samples of a full.yaml run."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "results" / "smollm2-135m" / "pair-quality" / "samples.jsonl"
    answers = [c for line in path.read_text().splitlines() for c in json.loads(line)["completions"]]
    assert len(answers) == 256
    assert sum(G.machinery(a) is not None for a in answers) == 0
    monkeypatch.setattr(G, "MACHINERY_NGRAM", 3)
    G._machinery.cache_clear()
    try:
        assert sum(G.machinery(a) is not None for a in answers) == 23
    finally:
        monkeypatch.undo()
        G._machinery.cache_clear()


# -- values, boundaries, the last n-gram (gaps a mutation run found) ---------------------------------

def test_similarity_and_length_values():
    assert G.similarity("Green TEA", "green tea") == 1.0  # case-folded
    assert G.similarity("abcd", "abce") == 0.75
    assert G.similarity("abc", "xyz") == 0.0
    assert G.length_ratio("", "") == 1.0 and G.length_ratio("", "x") == float("inf")
    assert G.length_ratio("ab", "abcd") == 2.0 and G.length_ratio("abcd", "ab") == 0.5


def test_values_exactly_on_a_threshold_pass():
    child = ANSWER.replace("Green", "Black").replace("two", "three")
    sim = G.similarity(ANSWER, child)
    assert G.check(ANSWER, child, G.GuardConfig(min_similarity=sim)).ok
    assert G.check(ANSWER, child, G.GuardConfig(min_similarity=sim + 1e-9)).reasons == ("similarity",)
    half, double = ANSWER[: len(ANSWER) // 2], ANSWER + ANSWER
    lax = dict(min_similarity=0.0, machinery=False)
    assert G.check(ANSWER, double, G.GuardConfig(max_length_ratio=2.0, **lax)).ok  # ratio 2.0 exactly
    assert G.check(double, ANSWER, G.GuardConfig(max_length_ratio=2.0, **lax)).ok  # ratio 0.5 exactly
    assert G.check(ANSWER, double + "x", G.GuardConfig(max_length_ratio=2.0, **lax)).reasons == ("length",)
    assert G.check(double + "x", ANSWER, G.GuardConfig(max_length_ratio=2.0, **lax)).reasons == ("length",)
    assert len(half) * 2 <= len(ANSWER)


def test_the_reported_phrase_and_the_last_n_gram():
    """The phrase found is reported as found; a template's last four words and an answer's last four
    words are checked like any others."""
    last = " ".join(G._words(T.FALLBACK_RATIONALE.splitlines()[0])[-4:])  # "part of the instruction"
    assert last == "part of the instruction"
    assert G.machinery(ANSWER + " " + last) == last
    assert G.machinery("Rewrite the response so that it follows") == "rewrite the response so"
    assert G.machinery("Tea. [[end]] more") == "[[end]]"
    assert G.machinery("[Instruction]\nWrite.").lower() == "[instruction]"
    v = G.check(ANSWER, ANSWER + " " + last)
    assert v.machinery == last and v.as_dict() == {"guard": ["machinery"], "similarity": round(v.similarity, 4),
                                                     "length_ratio": round(v.length_ratio, 4), "machinery": last}
    assert G.check(ANSWER, ANSWER).as_dict() == {"guard": [], "similarity": 1.0, "length_ratio": 1.0, "machinery": None}


def test_verdict_as_dict_rounds_to_four_places():
    v = G.Verdict(reasons=("length",), similarity=0.123456, length_ratio=2.345678, machinery=None)
    assert v.as_dict() == {"guard": ["length"], "similarity": 0.1235, "length_ratio": 2.3457, "machinery": None}
    assert not v.ok and G.Verdict((), 1.0, 1.0, None).ok
