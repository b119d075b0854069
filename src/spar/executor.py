"""Generation spread over Ray actors (``executor.kind: ray`` in a recipe, ``spar iterate --executor ray``).

``RayBackend`` is a backend like the others: each ``generate`` call is cut into contiguous shards,
one per replica, and every replica is a Ray actor holding its own copy of the model (hf, vLLM or an
OpenAI client: whatever the model string names), placed by Ray with the CPUs/GPUs the recipe asks
per replica. The answers come back in request order, so the stages above keep their own row order,
chunked writing and resume exactly as with the local executor; and since every backend seeds each
request from the request itself, a shard gives the same samples on any replica. A replica that dies
mid-call is replaced and its shard asked again (up to ``max_restarts`` times a call); the other
shards' answers are kept. ``ray.init(address=...)`` joins a running cluster; with no address Ray
starts a local one.

The search stage shards whole trees instead (``search_trees``): each replica runs a searcher of its
own over a group of trees, so every request of a tree goes to one replica and a level's requests
never wait on another replica's trees. Finished groups are handed back as they come (the stage
appends their trees at once); a dead replica's group is searched again from its roots.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spar.llm import BackendError, BackendOptions, ChatLike, OnBatch, Sampling, as_dicts


class _Replica:
    """What runs inside one Ray actor: one backend."""

    def __init__(self, model: str, options: BackendOptions, threads: int | None):
        if threads:
            import torch

            torch.set_num_threads(threads)
        from spar.llm import load_backend

        self.backend = load_backend(model, options)

    def generate(self, requests: list[list[dict]], sampling: Sampling) -> tuple[list[list[str]], int]:
        tokens = [0]
        out = self.backend.generate(requests, sampling, on_batch=lambda _r, n: tokens.__setitem__(0, tokens[0] + n))
        return out, tokens[0]

    def search(self, negatives: list, judge_cfg, search_cfg, seed: int, sequential: bool) -> tuple[list, dict[str, int]]:
        from spar.llm import Metered
        from spar.search.driver import Searcher

        metered = Metered(self.backend)
        trees = Searcher(metered, judge_cfg, search_cfg, seed, sequential=sequential).run(negatives)
        return trees, metered.spent()

    def pid(self) -> int:
        import os

        return os.getpid()


def shards(n: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) ranges cutting n requests into at most ``parts`` near-equal shards."""
    parts = max(1, min(parts, n))
    size, extra = divmod(n, parts)
    out, start = [], 0
    for k in range(parts):
        end = start + size + (1 if k < extra else 0)
        out.append((start, end))
        start = end
    return out


class RayBackend:
    def __init__(self, model: str, options: BackendOptions | None = None, replicas: int = 2, address: str | None = None,
                 cpus_per_replica: float = 1, gpus_per_replica: float = 0, max_restarts: int = 3):
        try:
            import ray
        except ImportError:
            raise BackendError("the ray executor needs Ray: pip install 'spar-lm[ray]'") from None
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        self.ray = ray
        self.name = model
        self.options = options or BackendOptions()
        self.max_restarts = max_restarts
        threads = max(1, int(cpus_per_replica)) if not gpus_per_replica else None
        self._make = lambda: ray.remote(num_cpus=cpus_per_replica, num_gpus=gpus_per_replica)(_Replica).remote(
            model, self.options, threads)
        self.replicas = [self._make() for _ in range(replicas)]
        self.restarts = 0
        self.groups: list[tuple[int, list[str]]] = []  # (replica, tree ids) of each group searched, for tests

    def _each(self, jobs: list, submit):
        """Run ``jobs`` on the replicas (``submit(replica, job)`` returns its Ray reference), one at a
        time per replica, and yield (replica index, job, result) as each finishes; a job whose replica
        died goes again to a fresh one, up to ``max_restarts`` times a call."""
        from ray.exceptions import RayActorError

        queue = list(range(len(jobs)))[::-1]
        pending: dict[Any, tuple[int, int]] = {}
        free = list(range(len(self.replicas)))[::-1]
        tries = 0
        while queue or pending:
            while queue and free:
                k, j = free.pop(), queue.pop()
                pending[submit(self.replicas[k], jobs[j])] = (k, j)
            ref = self.ray.wait(list(pending), num_returns=1)[0][0]
            k, j = pending.pop(ref)
            try:
                result = self.ray.get(ref)
            except RayActorError:
                tries += 1
                if tries > self.max_restarts:
                    raise BackendError(f"ray executor: replicas died {tries} times in one call; giving up") from None
                self.replicas[k] = self._make()
                self.restarts += 1
                queue.append(j)
                free.append(k)
                continue
            free.append(k)
            yield k, jobs[j], result

    def search_trees(self, searcher, negatives: Sequence, on_done=None, group: int | None = None) -> list:
        """The searcher's trees for ``negatives``, whole trees per replica (groups of ``group``
        trees, by default an even share per replica, at most 16), in the searcher's settings."""
        self.spend = {"calls": 0, "requests": 0, "new_tokens": 0}
        if not negatives:
            return []
        size = group or max(1, min(16, -(-len(negatives) // len(self.replicas))))
        jobs = [list(negatives[i:i + size]) for i in range(0, len(negatives), size)]
        trees = {}
        submit = lambda replica, negs: replica.search.remote(negs, searcher.judge_cfg, searcher.cfg,  # noqa: E731
                                                               searcher.seed, searcher.sequential)
        for k, negs, (got, spent) in self._each(jobs, submit):
            self.groups.append((k, [n.key for n in negs]))
            for key in self.spend:
                self.spend[key] += spent[key]
            for t in got:
                trees[t.id] = t
                if on_done:
                    on_done(t)
        return [trees[n.key] for n in negatives if n.key in trees]

    def generate(self, requests: Sequence[ChatLike], sampling: Sampling, on_batch: OnBatch | None = None) -> list[list[str]]:
        chats = [as_dicts(r) for r in requests]
        out: list[list[str] | None] = [None] * len(chats)
        submit = lambda replica, cut: replica.generate.remote(chats[cut[0]:cut[1]], sampling)  # noqa: E731
        for _, (a, b), (texts, tokens) in self._each(shards(len(chats), len(self.replicas)), submit):
            out[a:b] = texts
            if on_batch:
                on_batch(b - a, tokens)
        return out  # type: ignore[return-value]

    def close(self) -> None:
        for r in self.replicas:
            self.ray.kill(r)
        self.replicas = []
