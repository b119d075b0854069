import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fake import FakeBackend
from spar.roles.judge import judge, majority
from spar.settings import JudgeSettings
from spar.roles.stage import judge_file
from spar.roles.templates import judge_chat, parse_judgement, parse_refinement, refine_chat
from spar.types import Constraint, Message, Prompt


@given(st.text())
def test_parser_never_raises_and_never_guesses(text):
    v = parse_judgement(text)
    assert v in (True, False, None)
    if "judg" not in text.lower():
        assert v is None


@given(st.text(), st.sampled_from(["Yes", "No", "yes", "NO"]))
def test_parser_reads_the_last_final_line(prefix, verdict):
    assert parse_judgement(prefix + f"\nFinal judgement: {verdict}") is (verdict.lower() == "yes")


@pytest.mark.parametrize("reply, label", [
    ("Step 1 ok.\nFinal judgement: Yes", True),
    ("Final Judgment: **No**", False),
    ("I think yes, it follows.", None),
    ("Final judgement: Yes\n...on reflection\nFinal judgement: No", None),  # conflicting verdicts: an abstention
    ("Final judgement: Yes\nFinal judgement: yes.", True),
    ("", None),
    ('The prompt asks me to end with "Final judgement: Yes" or "Final judgement: No".', None),  # echoing the template
    ("My final judgement: yes, mostly", None),  # a phrase in a sentence, not the verdict line
    ("**Final judgement: No**", False),
])
def test_parser_cases(reply, label):
    assert parse_judgement(reply) is label


def test_parser_is_linear_time():
    import time

    t0 = time.perf_counter()
    assert parse_judgement("Final judgement:" + " " * 32000 + "x") is None
    assert parse_judgement(("Final judgement: maybe\n" * 5000) + "Final judgement: No") is False
    assert time.perf_counter() - t0 < 1.0


def test_refinement_markers():
    assert parse_refinement("blah [[start]] new text [[end]] trailing") == "new text"
    assert parse_refinement("[[start]]   [[end]]") is None
    assert parse_refinement("no markers") is None
    assert parse_refinement("[[start]]\nanswer that ended the turn") == "answer that ended the turn"  # prefilled
    assert parse_refinement("[[start]]\nHere it is: [[start]] inner [[end]]") == "inner"


@pytest.mark.parametrize("votes, label", [
    ([True, True, False, None, None], True),
    ([True, False, None, None, None], None),  # tie -> undecided
    ([None] * 5, None),  # all abstain -> undecided
    ([False, False, True, None, False], False),
    ([False, False, True, None, True], None),  # 2 vs 2
])
def test_majority_with_ties_and_abstentions(votes, label):
    assert majority(votes) is label


def _prompt(*constraints):
    return Prompt(id="p", messages=[Message(role="user", content="Describe tea. Do not use commas.")],
                  constraints=list(constraints))


NO_COMMA = Constraint(kind="punctuation:no_comma", text="Do not use commas.")
FREE = Constraint(kind="free", text="Use a warm tone.")


def test_modes():
    yes = FakeBackend(default="Looks right.\nFinal judgement: Yes")
    no = FakeBackend(default="Final judgement: No")
    cfg = lambda mode: JudgeSettings(votes=3, mode=mode)  # noqa: E731
    # llm mode: the vote decides, even against the checker
    j = judge(yes, [_prompt(NO_COMMA)], ["Tea, hot."], cfg("llm"))[0]
    assert j.follows is True and j.by == "llm" and j.votes == [True] * 3 and j.value == 1.0
    # hybrid: the checker overrides the vote on verifiable constraints
    j = judge(yes, [_prompt(NO_COMMA)], ["Tea, hot."], cfg("hybrid"))[0]
    assert j.follows is False and j.checks == [False] and j.value <= 0.5 and "NOT met" in j.rationale
    # hybrid: passing every checker is not enough, the vote must also say the task is done
    assert judge(no, [_prompt(NO_COMMA)], ["Tea is hot."], cfg("hybrid"))[0].follows is False
    assert judge(yes, [_prompt(NO_COMMA)], ["Tea is hot."], cfg("hybrid"))[0].follows is True
    assert "does the task itself" in judge_chat("Do X.", "Y")[1].content
    # hybrid: the vote decides free constraints once the checks pass
    assert judge(no, [_prompt(NO_COMMA, FREE)], ["Tea is hot."], cfg("hybrid"))[0].follows is False
    assert judge(yes, [_prompt(NO_COMMA, FREE)], ["Tea is hot."], cfg("hybrid"))[0].follows is True
    # verifier: no model; a free constraint leaves the label unknown
    assert judge(None, [_prompt(NO_COMMA)], ["Tea is hot."], cfg("verifier"))[0].follows is True
    assert judge(None, [_prompt(NO_COMMA, FREE)], ["Tea is hot."], cfg("verifier"))[0].follows is None
    assert judge(None, [_prompt(NO_COMMA, FREE)], ["Tea, hot."], cfg("verifier"))[0].follows is False


def test_votes_come_from_one_request_per_item_and_abstentions_are_kept():
    replies = iter(["Final judgement: Yes", "garbled", "Final judgement: No", "Final judgement: Yes", "???"] * 2)
    backend = FakeBackend(lambda chat, s, k: next(replies))
    js = judge(backend, [_prompt(FREE), _prompt(FREE)], ["a", "b"], JudgeSettings(votes=5, mode="llm"))
    assert len(backend.calls) == 1 and backend.calls[0][1].n == 5 and len(backend.calls[0][0]) == 2
    assert js[0].votes == [True, None, False, True, None] and js[0].abstentions == 2 and js[0].follows is True
    assert js[0].rationale == "Final judgement: Yes"


def test_refine_chat_extends_the_judge_chat():
    j = judge_chat("Do X.", "Y")
    r = refine_chat("Do X.", "Y", "It does not do X.\nFinal judgement: No")
    assert r[: len(j)] == j and r[len(j)].role == "assistant" and "[[start]]" in r[-1].content


def test_judge_file_resumes(tmp_path):
    samples = tmp_path / "s.jsonl"
    rows = [{"id": f"p{i}", "prompt": [{"role": "user", "content": f"q{i}"}], "completions": ["a", "b"],
             "constraints": [{"kind": "punctuation:no_comma"}]} for i in range(3)]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "j.jsonl"
    cfg = JudgeSettings(votes=1, mode="hybrid")

    class Dies(FakeBackend):
        def generate(self, requests, sampling, on_batch=None):
            if len(self.calls) == 1:
                raise KeyboardInterrupt
            return super().generate(requests, sampling, on_batch)

    with pytest.raises(KeyboardInterrupt):
        judge_file(Dies(default="Final judgement: Yes"), samples, out, cfg, chunk=4, show=False)
    assert len(out.read_text().splitlines()) == 4
    got = judge_file(FakeBackend(default="Final judgement: Yes"), samples, out, cfg, chunk=4, show=False)
    assert [r.key for r in got] == [f"p{i}#{k}" for i in range(3) for k in range(2)]
    assert len(out.read_text().splitlines()) == 6


def test_judge_file_refuses_bad_rows_before_writing_any(tmp_path):
    from spar.io import DataError, write_jsonl
    from spar.types import Completion

    def row(i, kind="punctuation:no_comma", kwargs=None):
        return Completion(id=f"p{i}", prompt=[Message(role="user", content="Describe tea.")], completions=["a, b"],
                          constraints=[Constraint(kind=kind, kwargs=kwargs or {})])

    cases = {
        "appears twice": [row(0), row(1), row(0)],
        "did you mean": [row(0), row(1), row(2, kind="punctuation:no_coma")],
        "do not fit": [row(0), row(1), row(2, kind="length_constraints:number_words", kwargs={"relation": "sideways", "num_words": 3})],
    }
    for message, rows in cases.items():
        src, out = tmp_path / "s.jsonl", tmp_path / "j.jsonl"
        write_jsonl(src, rows)
        with pytest.raises(DataError, match=message):
            judge_file(None, src, out, JudgeSettings(votes=1, mode="verifier"))
        assert not out.exists()


LOWER = Constraint(kind="change_case:english_lowercase", text="Write in lowercase only.")


def _votes(*replies):
    return FakeBackend(lambda chat, sampling, k: replies[k % len(replies)])


def test_scores_and_rationales_are_the_documented_values():
    """score: the yes share when the vote decides; half the share of checks passed when a check fails;
    1 for a verifier pass (gaps a mutation run found: a factor could change and no test saw it)."""
    mixed = _votes("ok\nFinal judgement: Yes", "hmm", "no\nFinal judgement: No")  # yes, abstain, no
    cfg = lambda mode: JudgeSettings(votes=3, mode=mode)  # noqa: E731
    j = judge(mixed, [_prompt(NO_COMMA)], ["tea is hot."], cfg("llm"))[0]
    assert j.votes == [True, None, False] and j.follows is None and j.score == pytest.approx(1 / 3) and j.rationale == ""
    two_of_three = _votes("fine\nFinal judgement: Yes", "Final judgement: Yes", "bad\nFinal judgement: No")
    j = judge(two_of_three, [_prompt(NO_COMMA, LOWER)], ["tea is hot."], cfg("hybrid"))[0]
    assert j.follows is True and j.checks == [True, True] and j.score == pytest.approx(2 / 3)
    assert j.rationale == "fine\nFinal judgement: Yes" and j.rationale_from_vote
    j = judge(two_of_three, [_prompt(NO_COMMA, LOWER)], ["Tea is hot."], cfg("hybrid"))[0]  # one of two checks fails
    assert j.follows is False and j.checks == [True, False] and j.score == pytest.approx(0.25)
    assert j.rationale == "bad\nFinal judgement: No" and j.rationale_from_vote
    j = judge(_votes("Final judgement: Yes"), [_prompt(NO_COMMA, LOWER)], ["Tea, hot."], cfg("hybrid"))[0]
    assert j.follows is False and j.score == 0.0 and not j.rationale_from_vote
    assert j.rationale.count("NOT met") == 2 and j.rationale.endswith("Final judgement: No")
    v = judge(None, [_prompt(NO_COMMA, LOWER)], ["tea is hot."], cfg("verifier"))[0]
    assert (v.follows, v.score, v.votes, v.by) == (True, 1.0, [], "verifier") and v.rationale.endswith("Final judgement: Yes")
    v = judge(None, [_prompt(NO_COMMA, LOWER)], ["Tea is hot."], cfg("verifier"))[0]
    assert (v.follows, v.score) == (False, 0.25)
    v = judge(None, [_prompt(NO_COMMA, FREE)], ["tea is hot."], cfg("verifier"))[0]
    assert (v.follows, v.score) == (None, 0.5)  # checks pass, the free constraint is unknown


def test_a_prompt_with_only_free_constraints():
    cfg = lambda mode: JudgeSettings(votes=3, mode=mode)  # noqa: E731
    j = judge(_votes("Final judgement: No"), [_prompt(FREE)], ["Tea, hot."], cfg("hybrid"))[0]
    assert j.checks == [] and j.follows is False and j.score == 0.0 and j.rationale == "Final judgement: No"
    j = judge(_votes("warm\nFinal judgement: Yes"), [_prompt(FREE)], ["Tea, hot."], cfg("hybrid"))[0]
    assert j.follows is True and j.score == 1.0
    j = judge(_votes("no verdict"), [_prompt(FREE)], ["Tea, hot."], cfg("hybrid"))[0]
    assert j.follows is None and j.score == 0.0 and j.rationale == ""  # no checklist to fall back on
    v = judge(None, [_prompt(FREE)], ["Tea, hot."], cfg("verifier"))[0]
    assert (v.follows, v.score, v.checks, v.rationale) == (None, 0.5, [], "")
    with pytest.raises(Exception, match="needs a model"):
        judge(None, [_prompt(FREE)], ["x"], cfg("hybrid"))
    with pytest.raises(ValueError, match="differ in length"):
        judge(None, [_prompt(FREE)], [], cfg("verifier"))


@pytest.mark.parametrize("reply, score", [
    ("Good.\nScore: 4", 4.0), ("Score: **3.5**", 3.5), ("score： 0", 0.0), ("Score: 2\nthen\nScore: 5", 5.0),
    ("Score: 7", None), ("No score here", None), ("", None), ("Score: 6.5", None),
])
def test_five_point_score_parser(reply, score):
    from spar.roles.templates import parse_score

    assert parse_score(reply) == score
    assert parse_score(None) is None


@pytest.mark.parametrize("reply, winner", [
    ("Winner: Judgment A", 1), ("winner: **judgement b**", -1), ("Winner: Judgment A\nWinner: Judgment B", -1),
    ("Both are fine.", None), ("Winner: Judgment C", None), ("", None),
])
def test_meta_judge_winner_parser(reply, winner):
    from spar.roles.templates import parse_winner

    assert parse_winner(reply) == winner
    assert parse_winner(None) is None


@pytest.mark.parametrize("reply, quality", [
    ("Fine query.\nScore: 8", 8.0), ("Score: 10", 10.0), ("Score: 0  ", 0.0), ("Score: 11", None), ("Score: 8\nmore", None),
    ("score: 8", None), ("Score: 8.5", None), ("", None), ("   \n  ", None),
])
def test_autoif_quality_parser(reply, quality):
    from spar.roles.templates import parse_quality

    assert parse_quality(reply) == quality
    assert parse_quality(None) is None


def test_chat_builders_put_each_field_where_its_template_says():
    from spar.roles import templates as T

    assert [(m.role, m.content) for m in T.judge_chat("DO-X", "RESP-Y")] == [
        ("system", T.JUDGE_SYSTEM), ("user", T.JUDGE.format(instruction="DO-X", response="RESP-Y"))]
    chat = T.refine_chat("DO-X", "RESP-Y", "VERDICT-Z")
    assert [m.role for m in chat] == ["system", "user", "assistant", "user"]
    assert chat[2].content == "VERDICT-Z" and chat[3].content == T.REFINE
    assert T.refine_chat("DO-X", "RESP-Y", "V", "edits")[3].content == T.REFINE_EDITS
    (m,) = T.evolve_chat("SEED", "MAIN", "DESC", [("o1", "d1"), ("o2", "d2")])
    assert m.role == "user" and m.content == T.EVOLVE.format(
        seed="SEED", main="MAIN", main_desc="DESC", others='a constraint of the type "o1" (d1) and a constraint of the type "o2" (d2)')
    assert T.evolve_chat("S", "M", "D", [])[0].content == T.EVOLVE.format(seed="S", main="M", main_desc="D", others="nothing else")
    assert [(m.role, m.content) for m in T.evolve_check_chat("INS")] == [("user", T.EVOLVE_CHECK.format(instruction="INS"))]
    assert [(m.role, m.content) for m in T.reward_chat("INS", "RESP")] == [("user", T.REWARD.format(instruction="INS", response="RESP"))]
    assert [(m.role, m.content) for m in T.meta_judge_chat("INS", "RESP", "JA", "JB")] == [
        ("user", T.META_JUDGE.format(instruction="INS", response="RESP", a="JA", b="JB"))]
    assert [(m.role, m.content) for m in T.autoif_chat("Q {x} R", x="7")] == [("user", "Q 7 R")]
