import pytest

from spar.selfplay.data import dpo_pairs, rft_examples, search_stats, similarity

from spar.settings import RFTSettings
from spar.selfplay.negatives import pick_negatives
from spar.settings import NegativesSettings
from spar.types import JudgedSample, Judgment, Message, Node, Prompt, Tree

P = Prompt(id="p", messages=[Message(role="user", content="Describe tea without commas.")])
NO = Judgment(follows=False, votes=[False] * 3, rationale="It has commas.\nFinal judgement: No")
YES = Judgment(follows=True, votes=[True] * 3, rationale="Fine.\nFinal judgement: Yes")
UNDECIDED = Judgment(follows=None, votes=[None] * 3)


def js(i, j, text="x"):
    return JudgedSample(id="p", index=i, response=text, judgment=j)


def test_pick_negatives():
    judged = [js(0, YES), js(1, NO, "a"), js(2, UNDECIDED), js(3, NO, "b"), js(4, NO, "c")]
    one = pick_negatives([P], judged, NegativesSettings())
    assert len(one) == 1 and one[0].response in "abc" and one == pick_negatives([P], judged, NegativesSettings())
    assert [n.index for n in pick_negatives([P], judged, NegativesSettings(per_prompt="all"))] == [1, 3, 4]
    assert len(pick_negatives([P], judged, NegativesSettings(per_prompt=2))) == 2
    assert pick_negatives([P], [js(0, YES), js(1, UNDECIDED)], NegativesSettings()) == []


def tree(solved=True):
    nodes = [Node(id=0, parent=None, depth=0, response="Tea is hot, green, good.", judgment=NO),
             Node(id=1, parent=0, depth=1, response="Tea is hot and green.", judgment=NO, reply="[[start]]\nTea is hot and green."),
             Node(id=2, parent=1, depth=2, response="Tea is hot and green and good.", judgment=YES,
                  reply="[[start]]\nTea is hot and green and good.[[end]]")]
    return Tree(id="p#1", prompt_id="p", nodes=nodes if solved else nodes[:2], solved=solved, expanded=2,
                strategy="bfs", solution=2 if solved else None)


def test_dpo_pairs_are_trl_conversational_rows():
    (pair,), dropped = dpo_pairs([tree(), tree(solved=False)], {"p": P})
    assert dropped == []
    assert pair.prompt == P.messages
    assert pair.rejected[0].content == "Tea is hot, green, good." and pair.chosen[0].content == "Tea is hot and green and good."
    assert pair.chosen[0].role == "assistant" and pair.origin["tree"] == "p#1"
    assert 0 < pair.origin["similarity"] < 1


def test_rft_examples_refinement_and_balanced_judgments():
    judged = [js(i, YES, f"y{i}") for i in range(6)] + [js(10, NO, "n0"), js(11, UNDECIDED, "u")]
    rows = rft_examples([tree()], judged, {"p": P}, RFTSettings(balance=0.5))
    kinds = [r["origin"]["kind"] for r in rows]
    assert kinds.count("refinement") == 1
    ref = next(r for r in rows if r["origin"]["kind"] == "refinement")
    assert ref["messages"][-1]["content"] == "[[start]]\nTea is hot and green and good.[[end]]"
    assert "Tea is hot and green." in ref["messages"][1]["content"]  # the parent's answer is what gets refined
    labels = [r["origin"]["label"] for r in rows if r["origin"]["kind"] == "judgment"]
    assert labels.count(True) == labels.count(False)  # balanced; the undecided one is never used
    texts = [r["messages"][1]["content"] for r in rows if r["origin"]["kind"] == "judgment"]
    assert len(texts) == len(set(texts))


def test_checker_written_rationales_are_not_training_targets():
    j = Judgment(follows=False, votes=[None], rationale="Checking each requirement:\nFinal judgement: No",
                 by="hybrid", rationale_from_vote=False)
    rows = rft_examples([], [js(0, j), js(1, YES, "y")], {"p": P}, RFTSettings(balance=0.0))
    assert all(r["origin"]["label"] is True for r in rows)


def test_stats():
    judged = [js(0, NO, "Tea is hot, green, good."), js(1, NO, "Coffee is bitter.")]
    st = search_stats([tree(), tree(solved=False)], judged)
    assert st.trees == 2 and st.solved == 1 and st.success_rate == 0.5
    assert st.mean_expanded_solved == 2 and st.mean_solution_depth == 2
    assert st.refined_pair_similarity == pytest.approx(similarity("Tea is hot, green, good.", "Tea is hot and green and good."), abs=1e-4)
    assert st.independent_pair_similarity < st.refined_pair_similarity


def test_sft_rows_are_one_validated_record_written_as_trls_plain_dict():
    from pydantic import ValidationError

    from spar.types import Message, SFTRow

    row = SFTRow.of([Message(role="user", content="Hi.")], "Hello.", {"kind": "refined", "prompt": "p"})
    assert row == {"messages": [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}],
                   "origin": {"kind": "refined", "prompt": "p"}}
    assert SFTRow.of([{"role": "user", "content": "Hi."}], "Hello.", {}) == {**row, "origin": {}}
    with pytest.raises(ValidationError):
        SFTRow.of([{"role": "robot", "content": "Hi."}], "Hello.", {})
