"""The real embedded model through negatives -> judge -> tree search -> a DPO row that TRL takes.

The checkers judge and the guard is off: a 135M model's own votes are mostly unparseable and its
refinements mostly rewrites, so either would leave this plumbing test without a pair to train on;
the guard and the hybrid judge have logic tests of their own."""

import random

import pytest

from spar.constraints.procedural import SPECS
from spar.constraints.seeds import seed_tasks
from spar.llm import Sampling
from spar.roles.judge import judge
from spar.settings import JudgeSettings
from spar.search.driver import Searcher
from spar.settings import SearchSettings
from spar.selfplay.data import dpo_pairs
from spar.selfplay.negatives import pick_negatives
from spar.settings import NegativesSettings
from spar.types import Constraint, JudgedSample, Message, Prompt

pytestmark = pytest.mark.model


def test_trees_get_solved_and_their_pair_trains_in_trl(embedded, tmp_path):
    rng = random.Random(0)
    kind = "punctuation:no_comma"
    tasks = [t for f, t in seed_tasks() if f in ("list", "describe")][:4]
    prompts = []
    for i, task in enumerate(tasks):
        c = Constraint(kind=kind, kwargs={}, text=SPECS[kind].render({}))
        prompts.append(Prompt(id=f"s{i}", messages=[Message(role="user", content=f"{task} {c.text}")], constraints=[c]))
    samples = embedded.generate([p.messages for p in prompts], Sampling(n=3, temperature=0.9, top_p=0.9, max_new_tokens=48, seed=1))
    jcfg = JudgeSettings(votes=1, mode="verifier", max_new_tokens=32)
    flat = [(p, k, t) for p, outs in zip(prompts, samples) for k, t in enumerate(outs)]
    js = judge(embedded, [p for p, _, _ in flat], [t for _, _, t in flat], jcfg)
    judged = [JudgedSample(id=p.id, index=k, response=t, judgment=j) for (p, k, t), j in zip(flat, js)]
    negatives = pick_negatives(prompts, judged, NegativesSettings())
    assert negatives, "with commas allowed nowhere, some of 12 samples should fail"
    searcher = Searcher(embedded, jcfg, SearchSettings(strategy="bfs", budget=6, depth=2, guard=False, max_new_tokens=64),
                        seed=rng.randint(0, 100))
    trees = searcher.run(negatives)
    assert any(t.solved for t in trees), [[n.response for n in t.nodes] for t in trees]
    pairs, _ = dpo_pairs(trees, {p.id: p for p in prompts}, None)
    assert pairs

    from spar.llm.embedded import embedded_model_path
    from spar.train import TrainSettings, train_dpo

    rows = [p.model_dump(exclude={"schema_version", "origin"}) for p in pairs[:2]]
    path, log = train_dpo(str(embedded_model_path()), rows, tmp_path, TrainSettings(max_steps=1, max_length=256))
    assert (path / "config.json").exists() and any("loss" in x for x in log)
