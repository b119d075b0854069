"""Refinement-tree strategies as generators, so that many trees can advance together.

A strategy never calls a model. It yields requests and receives their answers:

- ``Refine(nodes, k, greedy)`` -> for each node, a list of up to k refined responses (each with
  its raw reply; replies without the answer markers were already retried and then dropped);
- ``Judge(responses)`` -> one Judgment per response.

The driver (:mod:`spar.search.driver`) gathers the requests of every open tree into one batched
generate call per kind, or runs them one at a time with ``sequential``.

Acceptance: a node is accepted when its value (share of yes votes, or the hybrid judge's score)
is > 0.5 and it passed the guard (:mod:`spar.roles.guard`: still the same answer as its parent).
A node that failed the guard stays in the tree with its reasons but is neither accepted nor
expanded. Ties between children of equal value keep generation order.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from spar.roles.guard import GuardConfig
from spar.roles.guard import check as guard_check
from spar.settings import SearchSettings
from spar.types import Judgment, Node

STRATEGIES: tuple[str, ...] = ("bfs", "dfs", "greedy", "best_of_n", "iterative")
ACCEPT = 0.5


@dataclass
class Refine:
    nodes: list[Node]
    k: int
    greedy: bool = False


@dataclass
class Judge:
    responses: list[str]


Request = Refine | Judge
Search = Generator[Request, Any, None]


def guard_node(node: Node, parent: Node, guard: GuardConfig) -> None:
    """Record on ``node`` the guard's verdict against its parent (reasons and similarity)."""
    v = guard_check(parent.response, node.response, guard)
    node.guard, node.similarity = list(v.reasons), round(v.similarity, 4)


class TreeBuilder:
    """Nodes of one tree, the judged-node count against the budget, and a judgment cache by text."""

    def __init__(self, root: Node, budget: int, guard: GuardConfig | None = None):
        self.nodes = [root]
        self.budget = budget
        self.guard = guard
        self.judged = 0
        self.expanded = 0
        self.solution: Node | None = None
        self.cache: dict[str, Judgment] = {root.response: root.judgment} if root.judgment else {}

    @property
    def left(self) -> int:
        return self.budget - self.judged

    def expand(self, parents: list[Node], k: int, greedy: bool = False) -> Generator[Request, Any, list[Node]]:
        """Ask for k children of each parent (fewer when the budget runs out) and judge them."""
        plan: list[tuple[Node, int]] = []
        room = self.left
        for p in parents:
            take = min(k, room)
            if take <= 0:
                break
            plan.append((p, take))
            room -= take
        if not plan:
            return []
        results: list[list[tuple[str, str]]] = []
        for take in sorted({t for _, t in plan}, reverse=True):  # usually one group
            group = [p for p, t in plan if t == take]
            answers = yield Refine(group, take, greedy)
            results.extend(answers)
        self.expanded += len(plan)
        order = sorted(range(len(plan)), key=lambda i: -plan[i][1])  # results follow the grouping
        kids: list[Node] = []
        for pos, i in enumerate(order):
            parent = plan[i][0]
            for response, reply in results[pos]:
                kid = Node(id=len(self.nodes), parent=parent.id, depth=parent.depth + 1, response=response, reply=reply)
                if self.guard is not None:
                    guard_node(kid, parent, self.guard)
                kids.append(kid)
                self.nodes.append(kid)
        kids.sort(key=lambda n: n.id)
        fresh = sorted({n.response for n in kids if n.response not in self.cache})
        if fresh:
            judgments = yield Judge(fresh)
            self.cache.update(zip(fresh, judgments))
            self.judged += len(fresh)
        for n in kids:
            n.judgment = self.cache[n.response]
        return kids


def _best(nodes: list[Node]) -> Node | None:
    """The faithful node of highest value (max keeps the first of equals)."""
    return max((n for n in nodes if n.faithful), key=lambda n: n.value, default=None)


def _ranked(nodes: list[Node]) -> list[Node]:
    """Faithful nodes by value (stable: generation order among equals); the others are dead ends."""
    return sorted((n for n in nodes if n.faithful), key=lambda n: -n.value)


def _accepted(node: Node | None) -> bool:
    return node is not None and node.faithful and node.value > ACCEPT


def bfs(t: TreeBuilder, cfg: SearchSettings) -> Search:
    frontier = [t.nodes[0]]
    for _ in range(cfg.depth):
        kids = yield from t.expand(frontier, cfg.branch)
        best = _best(kids)
        if best is None:
            return
        if _accepted(best):
            t.solution = best
            return
        frontier = _ranked(kids)[: cfg.select]


def dfs(t: TreeBuilder, cfg: SearchSettings) -> Search:
    def visit(node: Node) -> Generator[Request, Any, bool]:
        if node.depth >= cfg.depth or t.left <= 0:
            return False
        kids = yield from t.expand([node], cfg.branch)
        best = _best(kids)
        if _accepted(best):
            t.solution = best
            return True
        for child in _ranked(kids)[: cfg.select]:
            if (yield from visit(child)):
                return True
        return False

    yield from visit(t.nodes[0])


def greedy(t: TreeBuilder, cfg: SearchSettings) -> Search:
    kids = yield from t.expand([t.nodes[0]], 1, greedy=True)
    if kids and _accepted(kids[0]):
        t.solution = kids[0]


def best_of_n(t: TreeBuilder, cfg: SearchSettings) -> Search:
    kids = yield from t.expand([t.nodes[0]], cfg.budget)
    best = _best(kids)
    if _accepted(best):
        t.solution = best


def iterative(t: TreeBuilder, cfg: SearchSettings) -> Search:
    node = t.nodes[0]
    seen = {node.response}
    while t.left > 0:
        kids = yield from t.expand([node], 1)
        if not kids:
            return
        node = kids[0]
        if _accepted(node):
            t.solution = node
            return
        if not node.faithful:  # a rewrite is not refined further: the chain would drift from the answer
            return
        if node.response in seen:
            # A text the chain already had is judged from the cache, so it costs no budget, and
            # refining it again repeats the chain: without this stop the loop never ends.
            return
        seen.add(node.response)


RUNNERS = {"bfs": bfs, "dfs": dfs, "greedy": greedy, "best_of_n": best_of_n, "iterative": iterative}
