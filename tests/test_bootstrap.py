"""The bootstrapped refiner's data: break one constraint, restore the original; held-out splits."""

import json
import random
import re

from fake import FakeBackend
from spar.constraints.checkers import follows
from spar.constraints.procedural import build_prompts
from spar.report import sample_pairs
from spar.settings import JudgeSettings
from spar.roles.templates import parse_refinement
from spar.settings import SearchSettings
from spar.selfplay import bootstrap as B
from spar.train import to_prompt_completion
from spar.types import Completion, Negative

ANSWERS = [
    "The old lighthouse keeper climbed the stairs every night and cleaned the lamp while the town slept. "
    "One winter a storm broke the glass but he kept the light burning until dawn.",
    "Green tea is picked young and steamed quickly. It keeps its colour and a grassy smell. "
    "Brew it below boiling for two minutes and drink it plain.",
    "Dear customer, thank you for writing to us. We are sorry that the parcel arrived late and "
    "we will refund the shipping cost within five days.",
]


def completions(n=12, seed=0):
    prompts = build_prompts(n, "train", seed, 1, 2)
    rng = random.Random(seed)
    return [Completion(id=p.id, prompt=p.messages, constraints=p.constraints, completions=rng.sample(ANSWERS, 2))
            for p in prompts]


def test_task_of_strips_the_constraint_wording():
    p = build_prompts(1, "train", 3, 2, 2)[0]
    task = B.task_of(p)
    assert task and p.text.startswith(task) and not any(c.text in task for c in p.constraints)


def test_examples_break_exactly_one_constraint_and_rows_restore_the_original():
    train, held = B.offline_examples(completions(), B.BootstrapConfig(eval_share=0.0, seed=1))
    assert len(train) >= 10 and not held
    for ex in train:
        cons = ex.prompt.constraints
        assert all(follows(c.kind, c.kwargs, ex.original, prompt=ex.prompt.text) for c in cons)
        broken = [c.kind for c in cons if not follows(c.kind, c.kwargs, ex.broken, prompt=ex.prompt.text)]
        assert broken == [ex.kind]
        assert ex.prompt.text.endswith(" ".join(c.text for c in cons))
    rows = B.sft_rows(train)
    assert len(rows) == len(train)  # refinement rows only by default
    for row, ex in zip(rows, train):
        pc = to_prompt_completion(row)  # what TRL trains on
        assert pc["completion"][0]["role"] == "assistant"
        assert parse_refinement(pc["completion"][0]["content"]) == ex.original
        assert ex.broken in pc["prompt"][1]["content"] and "NOT met" in pc["prompt"][2]["content"]
        json.dumps(row)
    with_judgments = B.sft_rows(train[:2], judgments=True)
    labels = [r["origin"]["label"] for r in with_judgments if r["origin"]["kind"] == "judgment"]
    assert labels == [False, True, False, True]


def test_held_out_kinds_and_prompts_never_reach_training_and_come_back_as_negatives():
    rows = completions(24)
    cfg = B.BootstrapConfig(heldout_kinds=("keywords:forbidden_words",), eval_share=0.25, seed=2)
    train, held = B.offline_examples(rows, cfg)
    assert train and held and all(ex.kind != "keywords:forbidden_words" for ex in train)
    train_prompts = {ex.prompt.id.split("#")[0] for ex in train}
    held_prompts = {ex.prompt.id.split("#")[0] for ex in held if ex.kind != "keywords:forbidden_words"}
    assert not train_prompts & held_prompts
    negs = B.split_heldout(held, cfg)
    assert [Negative.model_validate_json(n.model_dump_json()) for n in negs] == negs
    assert {n.prompt.source.split(":")[1] for n in negs} <= {"heldout-kind", "heldout-prompt"}
    assert all(n.judgment.follows is False for n in negs)
    # the same inputs give the same data
    again, _ = B.offline_examples(rows, cfg)
    assert [(e.prompt.id, e.broken) for e in again] == [(e.prompt.id, e.broken) for e in train]


def test_whole_fixes_teach_a_fixers_edit_from_the_answer_before_it_and_kinds_limits_what_is_broken():
    rows = completions(24)
    only = ("length_constraints:number_paragraphs", "detectable_format:number_bullet_lists", "combination:two_responses")
    cfg = B.BootstrapConfig(kinds=only, extra=2, eval_share=0.0, seed=3)
    train, _ = B.offline_examples(rows, cfg)
    assert train and {ex.kind for ex in train} <= set(only)
    whole = [ex for ex in train if ex.whole_fix]
    assert whole and len(whole) < len(train)
    for ex in whole:  # the answer before the fix fails that constraint alone, and is one of the sampled answers
        assert ex.broken in ANSWERS
        failed = [c.kind for c in ex.prompt.constraints if not follows(c.kind, c.kwargs, ex.broken, prompt=ex.prompt.text)]
        assert failed == [ex.kind]
    assert all(r["origin"].get("whole_fix") is True for r in B.sft_rows(whole))
    off, _ = B.offline_examples(rows, B.BootstrapConfig(kinds=only, extra=2, eval_share=0.0, seed=3, whole_fixes=False))
    assert not any(ex.whole_fix for ex in off)
    import pytest

    with pytest.raises(B.DataError, match="no breaker"):
        B.BootstrapConfig(kinds=("no:such_kind",))


def test_preference_rows_prefer_the_restoring_edit_to_the_copy_in_both_formats():
    from spar.roles import edits
    from spar.types import PreferencePair

    train, _ = B.offline_examples(completions(), B.BootstrapConfig(eval_share=0.0, seed=1))
    rows = B.preference_rows(train)
    sft = B.sft_rows(train)
    assert len(rows) == len(train)
    for pair, row, ex in zip(rows, sft, train):
        assert [m.model_dump() for m in pair.prompt] == row["messages"][:-1]  # the same refine chat as the SFT row
        assert parse_refinement(pair.chosen[0].content) == ex.original
        assert parse_refinement(pair.rejected[0].content) == ex.broken
        assert PreferencePair.model_validate_json(pair.model_dump_json()) == pair
    for pair, ex in zip(B.preference_rows(train, fmt="edits"), train):
        assert edits.apply(ex.broken, edits.parse(pair.chosen[0].content)) == ex.original
        assert edits.apply(ex.broken, edits.parse(pair.rejected[0].content)) == ex.broken



def test_preference_rows_can_reject_the_echo_of_the_judge_prompt():
    import pytest

    from spar.roles import edits
    from spar.roles.guard import machinery

    train, _ = B.offline_examples(completions(), B.BootstrapConfig(eval_share=0.0, seed=1))
    echo = B.preference_rows(train, rejected="echo")
    for pair, ex in zip(echo, train):
        bad = parse_refinement(pair.rejected[0].content)
        assert bad.startswith(ex.original + "\n\n") and machinery(bad) and not machinery(ex.original)
        assert parse_refinement(pair.chosen[0].content) == ex.original and pair.origin["rejected"] == "echo"
    mixed = B.preference_rows(train, rejected="mixed")
    assert [p.origin["rejected"] for p in mixed[:4]] == ["copy", "echo", "copy", "echo"] and len(mixed) == len(train)
    assert parse_refinement(mixed[0].rejected[0].content) == train[0].broken
    assert mixed[1].rejected == echo[1].rejected
    for pair, ex in zip(B.preference_rows(train, fmt="edits", rejected="echo"), train):
        fixed = edits.apply(ex.broken, edits.parse(pair.rejected[0].content))
        assert fixed.startswith(ex.original) and machinery(fixed[len(ex.original):])
    with pytest.raises(B.DataError, match="rejected must be one of copy, echo, mixed"):
        B.preference_rows(train, rejected="loose")

def test_refiner_report_counts_repairs_per_group():
    from spar.search.driver import Searcher

    cfg = B.BootstrapConfig(eval_share=0.99, seed=3)
    _, held = B.offline_examples(completions(8), cfg)
    negs = B.split_heldout(held, cfg)[:6]
    originals = {n.response: ex.original for n, ex in zip(negs, held)}

    def script(chat, sampling, k):  # a perfect refiner for the first three, a copier for the rest
        broken = re.search(r"\[Response\]\n(.*?)\n\nFirst say", chat[1]["content"], re.S).group(1)
        fixed = originals[broken] if list(originals).index(broken) < 3 else broken
        return fixed + "[[end]]"

    searcher = Searcher(FakeBackend(script), JudgeSettings(votes=1, mode="verifier"),
                        SearchSettings(strategy="greedy", budget=1))
    report = B.refiner_report(searcher.run(negs), negs)
    assert report["heldout-prompt"]["n"] == 6 and report["heldout-prompt"]["repaired"] == 3
    assert report["heldout-prompt"]["mean_similarity"] > 0.5


def test_teacher_rows_come_from_faithful_accepted_refinements():
    rows = [Completion(id=c.id, prompt=c.prompt, constraints=c.constraints,
                       completions=[a.replace(" and", ", and") for a in ANSWERS[:1]]) for c in completions(4)]

    def teacher(chat, sampling, k):
        if chat[-1]["role"] == "assistant":  # refine: take the commas out
            broken = re.search(r"\[Response\]\n(.*?)\n\nFirst say", chat[1]["content"], re.S).group(1)
            return broken.replace(",", "") + "[[end]]"
        resp = re.search(r"\[Response\]\n(.*?)\n\nFirst say", chat[-1]["content"], re.S).group(1)
        return "The task is done.\nFinal judgement: " + ("No" if "," in resp else "Yes")

    out = B.teacher_rows(FakeBackend(teacher), rows, JudgeSettings(votes=1, mode="hybrid"),
                         SearchSettings(strategy="bfs", budget=3))
    assert out and all(r["origin"]["bootstrap"] == "teacher" for r in out)
    refinements = [r for r in out if r["origin"]["kind"] == "refinement"]
    for r in refinements:
        assert "," not in parse_refinement(r["messages"][-1]["content"])


def test_report_examples_are_a_seeded_random_draw():
    rows = [{"i": i} for i in range(40)]
    a, b = sample_pairs(rows, 3, seed=1), sample_pairs(rows, 3, seed=1)
    assert a == b and len(a) == 3 and [r["i"] for r in a] == sorted(r["i"] for r in a)
    draws = {tuple(r["i"] for r in sample_pairs(rows, 3, seed=s)) for s in range(5)}
    assert len(draws) > 1 and (0, 1, 2) not in draws
    assert sample_pairs(rows[:2], 3, seed=0) == rows[:2]
