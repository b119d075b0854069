import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import shared_data
from fake import FakeBackend
from spar.constraints.checkers import check, conflicts
from spar.constraints.procedural import SPECS, build_prompts, contamination, contradiction, rendered_texts
from spar.constraints.seeds import seed_tasks, split_of
from spar.selfplay.evolve import evolve_prompts


def test_at_least_300_distinct_seed_tasks_and_disjoint_splits():
    tasks = [t for _, t in seed_tasks()]
    assert len(tasks) >= 300 and len(set(tasks)) == len(tasks)
    tr = {t for t in tasks if split_of(t) == "train"}
    he = {t for t in tasks if split_of(t) == "heldout"}
    assert tr and he and not tr & he
    for p in build_prompts(200, "heldout", seed=1):
        assert any(p.text.startswith(t) for t in he)


def test_deterministic_for_a_seed():
    assert build_prompts(30, seed=5) == build_prompts(30, seed=5)
    assert build_prompts(30, seed=5) != build_prompts(30, seed=6)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), split=st.sampled_from(["train", "heldout"]))
def test_sampled_sets_are_never_contradictory(seed, split):
    for p in build_prompts(8, split, seed=seed):
        kinds = [c.kind for c in p.constraints]
        assert 1 <= len(kinds) <= 4 and len(set(kinds)) == len(kinds)
        for a, b in itertools.combinations(p.constraints, 2):
            assert b.kind not in conflicts(a.kind)
            assert contradiction(a, b) is None
        assert not {"change_case:english_lowercase", "change_case:english_capital"} <= set(kinds)
        for c in p.constraints:
            assert c.text and c.text in p.text


def test_contradiction_rules_catch_argument_clashes():
    from spar.types import Constraint

    cap = Constraint(kind="length_constraints:number_words", kwargs={"relation": "less than", "num_words": 50})
    many = Constraint(kind="length_constraints:number_sentences", kwargs={"relation": "at least", "num_sentences": 8})
    assert contradiction(cap, many) and contradiction(many, cap)
    low = Constraint(kind="change_case:english_lowercase")
    assert contradiction(low, Constraint(kind="change_case:english_capital"))
    assert contradiction(Constraint(kind="keywords:forbidden_words", kwargs={"forbidden_words": ["river"]}),
                         Constraint(kind="keywords:existence", kwargs={"keywords": ["river"]}))


def test_every_sampled_constraint_has_a_working_checker():
    import random

    rng = random.Random(0)
    for kind, spec in SPECS.items():
        for _ in range(40):  # every argument value the sampler can draw
            kw = spec.sample(rng, "Write a poem.")
            v = check(kind, kw, "some response text", prompt="Write a poem.")  # builds without error
            assert isinstance(v.strict, bool) and isinstance(v.loose, bool) and (v.loose or not v.strict), (kind, kw, v)


def test_no_ifeval_contamination():
    data = shared_data("ifeval", "input_data.jsonl")
    reference = [json.loads(x)["prompt"] for x in data.read_text().splitlines()]
    n, run = contamination(rendered_texts(), reference)
    assert n <= 8, f"shares {n} words with IFEval: {run!r}"
    # and the check itself finds a copied sentence
    assert contamination([reference[0]], reference)[0] > 8


def test_teacher_evolution_checks_and_dedups():
    def script(chat, sampling, k):
        text = chat[-1]["content"]
        if "Make the task more demanding" in text:
            seed = text.split("\n\n")[1]
            if "bad" in seed:
                return "no markers here"
            return f"[[start]]{seed} Use a formal tone and include a table.[[end]]"
        if "consistent" in text:
            return "Final judgement: No" if "story" in text else "Looks fine.\nFinal judgement: Yes"
        return ""

    seeds = ["Write a poem about rain.", "Write a poem about rain!", "Write a story about a cat.", "bad seed"]
    out = evolve_prompts(FakeBackend(script), seeds, count=5, seed=0)
    texts = [p.text for p in out]
    assert all("formal tone" in t for t in texts)
    assert not any("story" in t or "bad" in t for t in texts)
    assert len(texts) <= 2 and len(set(texts)) == len(texts)  # the two rain seeds are near-copies
    assert all(c.kind == "free" for p in out for c in p.constraints)
