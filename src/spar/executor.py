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

    def generate(self, requests: Sequence[ChatLike], sampling: Sampling, on_batch: OnBatch | None = None) -> list[list[str]]:
        from ray.exceptions import RayActorError

        chats = [as_dicts(r) for r in requests]
        cuts = shards(len(chats), len(self.replicas))
        out: list[list[str] | None] = [None] * len(chats)
        pending: dict[Any, int] = {self.replicas[k].generate.remote(chats[a:b], sampling): k for k, (a, b) in enumerate(cuts)}
        tries = 0
        while pending:
            done, _ = self.ray.wait(list(pending), num_returns=1)
            ref = done[0]
            k = pending.pop(ref)
            a, b = cuts[k]
            try:
                texts, tokens = self.ray.get(ref)
            except RayActorError:  # the replica died: a fresh one takes its shard again
                tries += 1
                if tries > self.max_restarts:
                    raise BackendError(f"ray executor: replicas died {tries} times in one call; giving up") from None
                self.replicas[k] = self._make()
                self.restarts += 1
                pending[self.replicas[k].generate.remote(chats[a:b], sampling)] = k
                continue
            out[a:b] = texts
            if on_batch:
                on_batch(b - a, tokens)
        return out  # type: ignore[return-value]

    def close(self) -> None:
        for r in self.replicas:
            self.ray.kill(r)
        self.replicas = []
