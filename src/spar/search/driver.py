"""Run refinement trees: all trees of a batch advance together.

At each step every open tree has one pending request. All refinement requests of the step become
one batched generate call (n = branch), and all judge requests one judge call (n = votes), so a
level of a hundred trees costs two model calls instead of hundreds. ``sequential=True`` instead
finishes one tree before the next and sends one request per node and per vote, as the reference
implementation does; ``bench/search.py`` measures the difference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from spar.llm import Backend, Sampling
from spar.roles import edits
from spar.roles.judge import judge
from spar.roles.templates import FALLBACK_RATIONALE, parse_refinement, refine_chat, refine_prefill
from spar.search.strategies import RUNNERS, Judge, Refine, TreeBuilder
from spar.settings import JudgeSettings, SearchSettings
from spar.types import Negative, Node, Prompt, Tree


class Searcher:
    def __init__(self, backend: Backend, judge_cfg: JudgeSettings, cfg: SearchSettings, seed: int = 0,
                 sequential: bool = False):
        self.backend, self.judge_cfg, self.cfg, self.seed = backend, judge_cfg, cfg, seed
        self.guard = cfg.guard_config()
        self.sequential = sequential
        self.calls = 0  # generate calls made, for the benchmark
        # edits format: replies whose operations did not apply to the answer (a quote not in it);
        # each is a failed refinement, counted here and not retried
        self.edit_failures = 0

    # -- the two kinds of request ------------------------------------------------------------

    def _refine(self, items: list[tuple[Prompt, Node]], k: int, greedy: bool) -> list[list[tuple[str, str]]]:
        """k refinements per (prompt, node); replies without markers are re-asked, then dropped."""
        s = self.cfg
        fmt = s.refine_format
        prefix = [refine_prefill(fmt)] if s.prefill else []
        chats = [refine_chat(p.text, n.response, (n.judgment.rationale if n.judgment else "") or FALLBACK_RATIONALE, fmt)
                 + prefix for p, n in items]
        lead = prefix[0].content if prefix else ""
        base = s.sampling(k, self.seed, greedy).but(n=k)
        out: list[list[tuple[str, str] | None]] = [[None] * k for _ in items]
        todo = [(i, j) for i in range(len(items)) for j in range(k)]
        for attempt in range(self.cfg.max_retries + 1):
            if not todo:
                break
            # Sample j of a request is drawn with seed + j (+ 1000 per retry), in both modes.
            sampling = base.but(seed=base.seed + 1000 * attempt)
            if self.sequential:
                replies = {(i, j): self._gen([chats[i]], sampling.but(n=1, seed=sampling.seed + j))[0][0] for i, j in todo}
            elif attempt == 0:
                got = self._gen(chats, sampling)
                replies = {(i, j): got[i][j] for i, j in todo}
            else:  # re-ask only the failed samples, batched by sample index so each keeps its seed
                replies = self._regen(chats, todo, sampling)
            retry = []
            for (i, j), reply in replies.items():
                reply = lead + reply
                if fmt == "edits":
                    try:
                        ops = edits.parse(reply)
                    except edits.EditError:  # no readable block: asked again, as a rewrite without markers is
                        retry.append((i, j))
                        continue
                    try:
                        out[i][j] = (edits.apply(items[i][1].response, ops), reply)
                    except edits.EditError:
                        self.edit_failures += 1
                    continue
                text = parse_refinement(reply)
                if text is None:
                    retry.append((i, j))
                else:
                    out[i][j] = (text, reply)
            todo = retry
        return [[x for x in row if x is not None] for row in out]

    def _regen(self, chats, todo, sampling: Sampling) -> dict[tuple[int, int], str]:
        result: dict[tuple[int, int], str] = {}
        for j in sorted({j for _, j in todo}):
            idx = [i for i, jj in todo if jj == j]
            got = self._gen([chats[i] for i in idx], sampling.but(n=1, seed=sampling.seed + j))
            result.update({(i, j): g[0] for i, g in zip(idx, got)})
        return result

    def _gen(self, chats, sampling: Sampling) -> list[list[str]]:
        self.calls += 1
        return self.backend.generate(chats, sampling)

    def _judge(self, items: list[tuple[Prompt, str]]):
        js = judge(self.backend, [p for p, _ in items], [r for _, r in items], self.judge_cfg,
                   seed=self.seed, sequential=self.sequential)
        if self.judge_cfg.needs_model:
            self.calls += (len(items) * self.judge_cfg.votes) if self.sequential else 1
        return js

    # -- running trees ------------------------------------------------------------------------

    def run(self, negatives: Sequence[Negative], on_done: Callable[[Tree], None] | None = None) -> list[Tree]:
        trees: list[Tree | None] = [None] * len(negatives)
        builders = [TreeBuilder(Node(id=0, parent=None, depth=0, response=n.response, judgment=n.judgment), self.cfg.budget, self.guard)
                    for n in negatives]
        gens = [RUNNERS[self.cfg.strategy](b, self.cfg) for b in builders]

        def finish(i: int) -> None:
            trees[i] = self._tree(negatives[i], builders[i])
            if on_done:
                on_done(trees[i])

        if self.sequential:
            for i, g in enumerate(gens):
                req = next(g, None)
                while req is not None:
                    req = self._send(g, self._answer([(i, req)], negatives)[0])
                finish(i)
            return [t for t in trees if t is not None]

        pending: dict[int, Refine | Judge] = {}
        for i, g in enumerate(gens):
            req = next(g, None)
            if req is None:
                finish(i)
            else:
                pending[i] = req
        while pending:
            answers = self._answer(list(pending.items()), negatives)
            nxt: dict[int, Refine | Judge] = {}
            for (i, _), ans in zip(list(pending.items()), answers):
                req = self._send(gens[i], ans)
                if req is None:
                    finish(i)
                else:
                    nxt[i] = req
            pending = nxt
        return [t for t in trees if t is not None]

    @staticmethod
    def _send(gen, answer):
        try:
            return gen.send(answer)
        except StopIteration:
            return None

    def _answer(self, reqs: list[tuple[int, Refine | Judge]], negatives: Sequence[Negative]) -> list:
        """Answer a step's requests: refinements grouped into one call per (k, greedy), judgments into one."""
        answers: list = [None] * len(reqs)
        groups: dict[tuple[int, bool], list[int]] = {}
        for pos, (_, r) in enumerate(reqs):
            if isinstance(r, Refine):
                groups.setdefault((r.k, r.greedy), []).append(pos)
        for (k, greedy), poss in groups.items():
            items = [(negatives[reqs[p][0]].prompt, node) for p in poss for node in reqs[p][1].nodes]
            got = self._refine(items, k, greedy)
            at = 0
            for p in poss:
                m = len(reqs[p][1].nodes)
                answers[p] = got[at:at + m]
                at += m
        jpos = [pos for pos, (_, r) in enumerate(reqs) if isinstance(r, Judge)]
        if jpos:
            items = [(negatives[reqs[p][0]].prompt, resp) for p in jpos for resp in reqs[p][1].responses]
            got = self._judge(items)
            at = 0
            for p in jpos:
                m = len(reqs[p][1].responses)
                answers[p] = got[at:at + m]
                at += m
        return answers

    def _tree(self, neg: Negative, b: TreeBuilder) -> Tree:
        return Tree(id=neg.key, prompt_id=neg.prompt.id, nodes=b.nodes, solved=b.solution is not None,
                    expanded=b.expanded, strategy=self.cfg.strategy, solution=b.solution.id if b.solution else None)
