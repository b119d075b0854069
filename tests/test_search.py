"""Tree search with a scripted backend: each response's children and yes-votes are set per node."""

import re

import pytest

from fake import FakeBackend
from spar.io import read_jsonl, write_jsonl
from spar.settings import JudgeSettings
from spar.search.driver import Searcher
from spar.settings import SearchSettings
from spar.types import Judgment, Message, Negative, Prompt, Tree

VOTES = 5


def scripted(children: dict[str, list[str]], yes: dict[str, int], no_markers: set[str] = frozenset(), prefill=True):
    """children[r] = refinements of r by sample index; yes[r] = yes-votes out of 5 for r."""

    def script(chat, sampling, k):
        i = sampling.seed % 1000 + k  # sample index (retries add 1000 to the seed)
        last = chat[-1]["content"]
        if any("Rewrite the response" in m["content"] for m in chat):
            parent = re.search(r"\[Response\]\n(.*?)\n\nFirst say", chat[1]["content"], re.S).group(1)
            kids = children.get(parent, [])
            text = kids[i] if i < len(kids) else f"{parent}.x{i}"
            if text in no_markers and sampling.seed < 1000:
                return "forgot the markers"
            return f"Here you go.\n[[start]]{text}[[end]]" if prefill is False else f"{text}[[end]]"
        resp = re.search(r"\[Response\]\n(.*?)\n\nFirst say", last, re.S).group(1)
        return "Final judgement: Yes" if i < yes.get(resp, 0) else "Final judgement: No"

    return FakeBackend(script)


def negative(pid: str, response: str = "r") -> Negative:
    p = Prompt(id=pid, messages=[Message(role="user", content=f"Task {pid}.")])
    return Negative(prompt=p, index=0, response=response,
                    judgment=Judgment(follows=False, votes=[False] * 5, rationale="No good.\nFinal judgement: No"))


def run(backend, strategy="bfs", negs=None, sequential=False, prefill=True, guard=False, **kw):
    """Strategy mechanics on one-letter texts: the guard (off unless given) would reject them all."""
    s = Searcher(backend, JudgeSettings(votes=VOTES, mode="llm"), SearchSettings(strategy=strategy, guard=guard, prefill=prefill, **kw),
                 sequential=sequential)
    return s.run(negs or [negative("p")]), s


def test_bfs_expands_level_by_level_keeps_the_best_two_and_stops_at_the_first_accepted_level():
    children = {"r": ["a", "b", "c"], "b": ["b1", "b2", "b3"], "a": ["a1", "a2", "a3"],
                "b2": ["b21", "b22", "b23"], "a1": ["a11", "a12", "a13"]}
    yes = {"a": 1, "b": 2, "c": 0, "b2": 2, "a1": 2, "a12": 3, "b23": 4}
    (tree,), _ = run(scripted(children, yes))
    responses = [n.response for n in tree.nodes]
    assert responses == ["r", "a", "b", "c", "b1", "b2", "b3", "a1", "a2", "a3", "b21", "b22", "b23", "a11", "a12", "a13"]
    # level 3 holds two accepted children; the best (b23, 4/5) wins over a12 (3/5)
    assert tree.solved and tree.nodes[tree.solution].response == "b23"
    assert [tree.nodes[i].response for i in tree.path()] == ["r", "b", "b2", "b23"]
    assert tree.expanded == 5 and len(tree.nodes) - 1 == 15


def test_bfs_stops_early_when_a_first_level_child_is_accepted():
    (tree,), _ = run(scripted({"r": ["a", "b", "c"]}, {"b": 3, "c": 5}))
    assert tree.solved and tree.nodes[tree.solution].response == "c" and len(tree.nodes) == 4 and tree.expanded == 1


def test_dfs_descends_into_the_best_child_first_and_backtracks():
    children = {"r": ["a", "b", "c"], "b": ["b1", "b2", "b3"], "b1": ["x", "y", "z"], "b2": ["u", "v", "w"],
                "a": ["a1", "a2", "a3"]}
    yes = {"a": 1, "b": 2, "b1": 2, "b2": 1, "a2": 3}
    (tree,), _ = run(scripted(children, yes), "dfs", budget=100)
    order = [n.response for n in tree.nodes]
    assert order == ["r", "a", "b", "c", "b1", "b2", "b3", "x", "y", "z", "u", "v", "w", "a1", "a2", "a3"]
    assert tree.solved and tree.nodes[tree.solution].response == "a2"


def test_budget_is_never_exceeded():
    for strategy in ("bfs", "dfs", "best_of_n", "iterative", "greedy"):
        for budget in (1, 4, 7, 15):
            (tree,), s = run(scripted({}, {}), strategy, budget=budget)
            assert len(tree.nodes) - 1 <= budget and not tree.solved


def test_same_text_is_judged_once_per_tree():
    backend = scripted({"r": ["same", "same", "same"], "same": ["same"] * 3}, {})
    (tree,), _ = run(backend, "bfs")
    judged = sum(len(chats) for chats, s in backend.calls if s.n == VOTES)
    assert judged == 1 and len(tree.nodes) == 1 + 3 + 6 + 6


def test_ties_and_abstentions_are_not_accepted():
    def script(chat, sampling, k):
        if any("Rewrite the response" in m["content"] for m in chat):
            return f"child{sampling.seed + k}[[end]]"
        return ["Final judgement: Yes", "Final judgement: No", "unsure", "Final judgement: Yes", "??"][sampling.seed + k]

    (tree,), _ = run(FakeBackend(script), "bfs")  # 2 yes of 5: value 0.4
    assert not tree.solved and all(n.value == 0.4 for n in tree.nodes[1:])


def test_replies_without_markers_are_retried_then_dropped_and_root_only_trees_are_unsolved():
    backend = scripted({"r": ["a", "b", "c"]}, {"b": 5}, no_markers={"b"}, prefill=False)
    (tree,), _ = run(backend, "bfs", prefill=False)
    assert tree.solved and tree.nodes[tree.solution].response == "b"  # recovered on retry
    always_bad = FakeBackend(lambda chat, s, k: "no markers ever")
    (tree,), _ = run(always_bad, "bfs", prefill=False)
    assert not tree.solved and len(tree.nodes) == 1 and tree.expanded == 1


def test_iterative_greedy_and_best_of_n():
    children = {"r": ["a", "b", "c", "d"], "a": ["a1"], "a1": ["a11"]}
    yes = {"a11": 5, "d": 4}
    (t,), _ = run(scripted(children, yes), "iterative")
    assert [n.response for n in t.nodes] == ["r", "a", "a1", "a11"] and t.solved
    (t,), s = run(scripted(children, yes), "best_of_n", budget=4)
    assert [n.response for n in t.nodes] == ["r", "a", "b", "c", "d"] and t.nodes[t.solution].response == "d"
    backend = scripted(children, yes)
    (t,), _ = run(backend, "greedy")
    assert len(t.nodes) == 2 and not t.solved and backend.calls[0][1].temperature == 0.0


@pytest.mark.parametrize("children", [{"r": ["r"]}, {"r": ["a"], "a": ["b"], "b": ["a"]}])
def test_iterative_stops_when_the_chain_repeats_a_text(children):
    # a repeated text is judged from the cache (no budget spent), so the chain must stop on its own
    (t,), _ = run(scripted(children, {}), "iterative", budget=15)
    assert not t.solved and len(t.nodes) <= 4 and t.nodes[-1].response in {n.response for n in t.nodes[:-1]}


@pytest.mark.parametrize("strategy", ["bfs", "dfs", "iterative", "best_of_n", "greedy"])
def test_batched_and_sequential_give_the_same_trees(strategy):
    children = {"r": ["a", "b", "c"], "b": ["b1", "b2", "b3"], "a": ["a1", "a2", "a3"]}
    yes = {"a": 1, "b": 2, "a2": 3, "b1": 2}
    negs = [negative(f"p{i}") for i in range(4)] + [negative("q", "a")]
    batched, sb = run(scripted(children, yes), strategy, negs=negs)
    sequential, ss = run(scripted(children, yes), strategy, negs=negs, sequential=True)
    assert sorted(batched, key=lambda t: t.id) == sorted(sequential, key=lambda t: t.id)
    if strategy in ("bfs", "dfs"):
        assert sb.calls < ss.calls


def test_all_trees_of_a_step_share_one_call():
    backend = scripted({"r": ["a", "b", "c"]}, {"a": 5})
    run(backend, "bfs", negs=[negative(f"p{i}") for i in range(10)])
    assert len(backend.calls) == 2  # one refine call (10 x n=3), one judge call (30 x n=5)
    assert len(backend.calls[0][0]) == 10 and backend.calls[0][1].n == 3
    assert len(backend.calls[1][0]) == 10 * 3 and backend.calls[1][1].n == VOTES


def test_tree_file_round_trips(tmp_path):
    trees, _ = run(scripted({"r": ["a", "b", "c"]}, {"a": 5}), negs=[negative("p0"), negative("p1")])
    write_jsonl(tmp_path / "t.jsonl", trees)
    assert read_jsonl(tmp_path / "t.jsonl", Tree) == trees


def test_prefill_starts_the_refiners_turn_and_keeps_the_whole_reply():
    backend = scripted({"r": ["a", "b", "c"]}, {"a": 5})
    (tree,), _ = run(backend)
    refine_chat = backend.calls[0][0][0]
    assert refine_chat[-1] == {"role": "assistant", "content": "[[start]]\n"}
    assert tree.nodes[1].response == "a" and tree.nodes[1].reply == "[[start]]\na[[end]]"


def test_tree_show_draws_values_votes_and_diffs(tmp_path):
    from typer.testing import CliRunner

    from spar.cli import app

    trees, _ = run(scripted({"r": ["r plus new words", "b", "c"]}, {"r plus new words": 5}), negs=[negative("p0")])
    path = tmp_path / "t.jsonl"
    write_jsonl(path, trees)
    res = CliRunner().invoke(app, ["tree", "show", str(path), "--id", "p0"])
    assert res.exit_code == 0, res.output
    assert "solved" in res.output and "value=1.00" in res.output and "YYYYY" in res.output
    assert "plus new words" in res.output
    res = CliRunner().invoke(app, ["tree", "show", str(path), "--id", "nope"])
    assert res.exit_code == 2 and "no tree with id 'nope'" in res.output


# -- the strategies as generators, driven by hand ----------------------------------------------------

def _drive(strategy: str, root_text: str, kids_of, yes: set[str], budget: int, branch: int = 3, select: int = 2,
           depth: int = 3, guard=None):
    """Run one strategy; kids_of(parent_text, k) gives the refinements. Returns (builder, requests)."""
    from spar.search.strategies import RUNNERS, Judge, Refine, TreeBuilder
    from spar.types import Node

    root = Node(id=0, parent=None, depth=0, response=root_text,
                judgment=Judgment(follows=False, votes=[False] * 5, rationale="No.\nFinal judgement: No"))
    t = TreeBuilder(root, budget, guard)
    cfg = SearchSettings(strategy=strategy, budget=budget, branch=branch, select=select, depth=depth)
    gen, answer, requests = RUNNERS[strategy](t, cfg), None, []
    while True:
        try:
            req = gen.send(answer)
        except StopIteration:
            return t, requests
        if isinstance(req, Refine):
            requests.append(("refine", [n.id for n in req.nodes], req.k, req.greedy))
            answer = [[(text, "r:" + text) for text in kids_of(n.response, req.k)] for n in req.nodes]
        else:
            assert isinstance(req, Judge)
            requests.append(("judge", list(req.responses)))
            answer = [Judgment(follows=r in yes, votes=[r in yes] * 5) for r in req.responses]


def _fresh(parent: str, k: int) -> list[str]:
    return [f"{parent}.{i}" for i in range(k)]


def test_a_budget_that_runs_out_mid_level_asks_the_last_parent_for_fewer():
    t, reqs = _drive("bfs", "r", _fresh, yes=set(), budget=4, branch=3, depth=2)
    # level 1: 3 kids of the root; level 2: the budget leaves 1, so the best kid is asked for one
    assert reqs[0] == ("refine", [0], 3, False) and reqs[2] == ("refine", [1], 1, False)
    assert t.judged == 4 and len(t.nodes) == 5 and t.nodes[4].parent == 1 and t.solution is None
    t, reqs = _drive("bfs", "r", _fresh, yes=set(), budget=5, branch=3, select=2, depth=2)
    # two parents on level 2, 2 judged nodes left: 2 for the first parent and none for the second
    assert [r for r in reqs if r[0] == "refine"] == [("refine", [0], 3, False), ("refine", [1], 2, False)]
    assert t.expanded == 2 and t.judged == 5


def test_mixed_takes_are_asked_largest_first_and_kids_keep_their_parents():
    from spar.search.strategies import Judge, Refine, TreeBuilder
    from spar.types import Node

    root = Node(id=0, parent=None, depth=0, response="r")
    t = TreeBuilder(root, budget=4)
    a = Node(id=1, parent=0, depth=1, response="a")
    b = Node(id=2, parent=0, depth=1, response="b")
    t.nodes += [a, b]
    gen = t.expand([a, b], 3)
    req = next(gen)
    assert isinstance(req, Refine) and [n.id for n in req.nodes] == [1] and req.k == 3
    req = gen.send([[("a1", ""), ("a2", ""), ("a3", "")]])
    assert isinstance(req, Refine) and [n.id for n in req.nodes] == [2] and req.k == 1
    req = gen.send([[("b1", "")]])
    assert isinstance(req, Judge) and req.responses == ["a1", "a2", "a3", "b1"]
    with pytest.raises(StopIteration) as stop:
        gen.send([Judgment(follows=False, votes=[False])] * 4)
    kids = stop.value.value
    assert [(k.response, k.parent, k.depth) for k in kids] == [("a1", 1, 2), ("a2", 1, 2), ("a3", 1, 2), ("b1", 2, 2)]
    assert t.expanded == 2 and t.judged == 4 and t.left == 0


def test_the_roots_text_and_repeated_texts_are_judged_from_the_cache():
    t, reqs = _drive("bfs", "r", lambda p, k: ["r", "s", "s"], yes=set(), budget=9, depth=1)
    assert [r for r in reqs if r[0] == "judge"] == [("judge", ["s"])]  # the root's own text is never re-judged
    assert t.judged == 1 and t.nodes[1].judgment.follows is False and t.nodes[1].judgment is t.nodes[0].judgment


def test_dfs_stops_at_the_first_accepted_grandchild_and_spends_no_more():
    t, reqs = _drive("dfs", "r", _fresh, yes={"r.0.0"}, budget=15, depth=3)
    assert t.solution is not None and t.solution.response == "r.0.0"
    assert t.judged == 6 and [r[1] for r in reqs if r[0] == "refine"] == [[0], [1]]
    t, _ = _drive("dfs", "r", _fresh, yes=set(), budget=4, depth=3)
    assert t.judged == 4 and t.solution is None  # the last judged node of the budget is still asked for


def test_greedy_and_iterative_spend_their_budget_as_documented():
    t, reqs = _drive("greedy", "r", _fresh, yes={"r.0"}, budget=15)
    assert reqs[0] == ("refine", [0], 1, True) and t.solution.response == "r.0" and t.judged == 1
    t, _ = _drive("greedy", "r", _fresh, yes=set(), budget=15)
    assert t.solution is None
    t, _ = _drive("iterative", "r", _fresh, yes=set(), budget=2)
    assert t.judged == 2 and [n.response for n in t.nodes] == ["r", "r.0", "r.0.0"]
    t, _ = _drive("iterative", "r", _fresh, yes={"r.0.0.0"}, budget=5)
    assert t.solution.response == "r.0.0.0" and t.judged == 3


def test_the_guard_on_a_node_uses_the_trees_settings_and_rounds_similarity():
    from spar.roles.guard import GuardConfig, similarity
    from spar.search.strategies import guard_node
    from spar.types import Node

    parent = Node(id=0, parent=None, depth=0, response="The tea is green and hot today")
    kid = Node(id=1, parent=0, depth=1, response="The tea is green and cold today")
    guard_node(kid, parent, GuardConfig(min_similarity=0.5))
    assert kid.guard == [] and kid.similarity == round(similarity(parent.response, kid.response), 4) != similarity(
        parent.response, kid.response)
    guard_node(kid, parent, GuardConfig(min_similarity=0.99))
    assert kid.guard == ["similarity"]
