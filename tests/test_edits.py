"""Refinements as edit operations (spar.roles.edits): the format read and written, operations made
from a pair of texts, and the search applying a refiner's operations to the answer."""

from __future__ import annotations

import random
import re

import pytest

from fake import FakeBackend
from spar.roles import edits as E
from spar.roles.templates import refine_chat
from spar.search.driver import Searcher
from spar.settings import JudgeSettings, SearchSettings
from spar.types import Constraint, Judgment, Message, Negative, Prompt


def test_each_operation_applies_to_the_first_occurrence_of_its_quote():
    ops = [E.Op("replace", "grey", "blue"), E.Op("delete", " very"), E.Op("insert", "sea", ","), E.Op("append", text="!")]
    assert E.apply("The very grey sea is grey", ops) == "The blue sea, is grey!"


def test_the_format_reads_back_what_it_writes_even_with_newlines_and_edge_spaces():
    ops = [E.Op("replace", " a b ", " a c "), E.Op("append", text="\n\nLet me know if this helps."),
           E.Op("insert", "Dear Mayor,", "\n"), E.Op("delete", "x\n")]
    assert E.parse(E.render(ops)) == ops
    # what a model writes after the prefilled opening marker, closing marker left out at the very end
    assert E.parse("[[edits]]\nREPLACE: sky,\nWITH: sky") == [E.Op("replace", "sky,", "sky")]


@pytest.mark.parametrize("reply, why", [
    ("REPLACE: a\nWITH: b\n[[end]]", "no [[edits]] block"),
    ("[[edits]]\n[[end]]", "no operation"),
    ("[[edits]]\nI changed the colour.\nREPLACE: a\nWITH: b\n[[end]]", "text before"),
    ("[[edits]]\nREPLACE: a\n[[end]]", "REPLACE without its WITH"),
    ("[[edits]]\nWITH: b\n[[end]]", "WITH without"),
    ("[[edits]]\nDELETE: \n[[end]]", "DELETE quotes nothing"),
])
def test_a_reply_that_is_not_operations_is_refused_with_its_reason(reply, why):
    with pytest.raises(E.EditError, match=re.escape(why)):
        E.parse(reply)


def test_a_quote_that_is_not_in_the_answer_fails_the_edit():
    with pytest.raises(E.EditError, match="operation 2 quotes 'dog'"):
        E.refine("The cat sat.", "[[edits]]\nREPLACE: cat\nWITH: cow\nREPLACE: dog\nWITH: hen\n[[end]]")


@pytest.mark.parametrize("old, new", [
    ("The sea is blue, and the sky, grey.", "The sea is blue and the sky grey."),
    ("Once upon a time", '"Once upon a time"'),
    ("a b a b a b", "a b a c a b"),
    ("one two three", "zero one two three"),
    ("The cat. The cat. The cat.", "The cat. The dog. The cat."),
    ("hello world", "hello world\n\nLet me know if this helps."),
])
def test_operations_between_two_texts_reproduce_the_second_and_quote_unique_spans(old, new):
    ops = E.ops_between(old, new)
    assert E.refine(old, E.render(ops)) == new
    assert all(old.count(op.quote) == 1 for op in ops if op.kind != "append")


def test_operations_between_random_edits_always_reproduce_them():
    rng = random.Random(0)
    words = "the a cat dog sea , . \n blue grey".split(" ")
    for _ in range(2000):
        old = " ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))
        new = old.split(" ")
        for _ in range(rng.randint(1, 4)):
            i, r = rng.randrange(len(new) + 1), rng.random()
            if r < 0.3 and new:
                new.pop(min(i, len(new) - 1))
            elif r < 0.6:
                new.insert(i, rng.choice(words))
            elif new:
                new[min(i, len(new) - 1)] = rng.choice(words)
        new = " ".join(new)
        ops = E.ops_between(old, new)
        assert (E.refine(old, E.render(ops)) if ops else old) == new, (old, new, ops)


def test_an_edit_is_much_shorter_than_the_rewrite_it_stands_for():
    story = " ".join(f"Sentence {i} of a story about the sea and its grey waves." for i in range(20))
    reply = E.render(E.ops_between(story, f'"{story}"'))
    assert len(reply) < len(story) / 4


def negative(response: str) -> Negative:
    p = Prompt(id="p", messages=[Message(role="user", content="Describe the sea without commas.")],
               constraints=[Constraint(kind="punctuation:no_comma")])
    return Negative(prompt=p, index=0, response=response,
                    judgment=Judgment(follows=False, votes=[False], rationale="- NOT met: no commas\nFinal judgement: No",
                                      by="verifier"))


def test_the_search_applies_the_refiners_operations_and_counts_those_that_do_not_apply():
    replies = ["REPLACE: grey, and\nWITH: grey and\n[[end]]",  # applies: the checkers then accept it
               "REPLACE: purple\nWITH: red\n[[end]]",  # quotes what is not there: a failed refinement
               "Sure! The sea is grey."]  # no operations: asked again, as an unmarked rewrite would be

    def script(chat, sampling, k):
        assert chat[-1] == {"role": "assistant", "content": "[[edits]]\n"}  # the prefilled opening marker
        assert "INSERT AFTER:" in chat[-2]["content"]  # the edits request, not the rewrite one
        return replies[(sampling.seed % 1000 + k) % 3] if sampling.seed < 1000 else "REPLACE: sea\nWITH: ocean"

    s = SearchSettings(strategy="bfs", branch=3, depth=1, budget=3, guard=False, refine_format="edits")
    searcher = Searcher(FakeBackend(script), JudgeSettings(votes=1, mode="verifier"), s)
    tree = searcher.run([negative("The sea is grey, and calm.")])[0]
    texts = sorted(n.response for n in tree.nodes[1:])
    assert texts == ["The ocean is grey, and calm.", "The sea is grey and calm."]
    assert tree.solved and tree.nodes[tree.solution].response == "The sea is grey and calm."
    assert searcher.edit_failures == 1


def test_bootstrap_rows_in_the_edits_format_teach_the_operations_that_restore_the_answer():
    from spar.selfplay.bootstrap import Break, sft_rows

    p = Prompt(id="b", messages=[Message(role="user", content="Describe the sea. Wrap it in double quotes.")],
               constraints=[Constraint(kind="startend:quotation")])
    ex = Break(prompt=p, original='"The sea is grey."', broken="The sea is grey.", kind="startend:quotation",
               checks=[("Wrap it in double quotes.", False)])
    row = sft_rows([ex], fmt="edits")[0]
    chat, reply = row["messages"][:-1], row["messages"][-1]["content"]
    assert chat == [m.model_dump() for m in refine_chat(p.text, ex.broken, ex.rationale, "edits")]
    assert E.refine(ex.broken, reply) == ex.original and reply.startswith("[[edits]]\n")
