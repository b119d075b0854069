"""The models a run has loaded: one metered backend per model string, built from the recipe's
``engine``, ``executor`` and ``remote`` sections, kept while a later stage needs it and released
(its memory and processes given back) as soon as none does. ``spar.pipeline`` owns one."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from spar.config import RunConfig
from spar.llm import Backend, BackendOptions, Metered, load_backend
from spar.llm.embedded import PACKAGED

BackendFactory = Callable[..., Backend]  # (model, batch_size, dtype=..., engine=..., timeout=..., max_retries=...)
SPEND = ("calls", "requests", "prompt_tokens", "new_tokens")


def default_factory(model: str, batch_size: int, dtype: str | None = None, engine: dict | None = None,
                    timeout: float = 120.0, max_retries: int = 6) -> Backend:
    return load_backend(model, BackendOptions(batch_size=batch_size, dtype=dtype, extra={"engine": engine or {}},
                                              timeout=timeout, max_retries=max_retries))


class Engines:
    def __init__(self, cfg: RunConfig, factory: BackendFactory = default_factory):
        self.cfg, self.factory = cfg, factory
        self.loaded: dict[str, Metered] = {}

    def get(self, model: str) -> Backend:
        """The backend of ``model``, loaded on first use and reused until released."""
        if model not in self.loaded:
            cfg = self.cfg
            remote = {"timeout": cfg.remote.timeout, "max_retries": cfg.remote.retries}
            extra: dict = {"dtype": cfg.dtype} if cfg.dtype else {}
            # vLLM's engine settings: for vllm: models, and for a packaged model when the recipe sets any
            # (vLLM may run it: spar.llm.packaged_engine); one engine per model string, reused until released
            if model.startswith("vllm:") or (model in PACKAGED and cfg.engine.model_dump(exclude_defaults=True)):
                extra["engine"] = cfg.engine.model_dump()
            ex = cfg.executor
            if ex.kind == "ray":  # replicas in Ray actors, each loading the model as the local executor would
                from spar.executor import RayBackend

                inner = RayBackend(model, BackendOptions(batch_size=cfg.batch_size, dtype=cfg.dtype,
                                                         extra={"engine": extra.get("engine") or {}}, **remote),
                                   replicas=ex.replicas, address=ex.address, cpus_per_replica=ex.cpus_per_replica,
                                   gpus_per_replica=ex.gpus_per_replica, max_restarts=ex.max_restarts)
            else:
                inner = self.factory(model, cfg.batch_size, **extra, **remote)
            self.loaded[model] = Metered(inner)
        return self.loaded[model]

    def release(self, keep: set[str]) -> None:
        """Drop every loaded model not in ``keep`` (and give its memory back)."""
        gone = [m for m in self.loaded if m not in keep]
        for m in gone:
            inner = getattr(self.loaded.pop(m), "inner", None)
            if hasattr(inner, "close"):  # an engine with processes of its own (vLLM) stops them now
                inner.close()
        if gone:
            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except ImportError:  # pragma: no cover
                pass

    def spent(self) -> dict[str, dict]:
        """Each loaded model's spend so far (to measure a stage by: :meth:`since`)."""
        return {m: b.spent() for m, b in self.loaded.items()}

    def since(self, before: dict[str, dict]) -> dict[str, Any]:
        """Calls, requests, prompt and new tokens spent since ``before`` (:meth:`spent`), all models."""
        total: dict[str, Any] = {k: 0 for k in SPEND}
        for m, b in self.loaded.items():
            now, was = b.spent(), before.get(m, {})
            for k in total:
                total[k] += now[k] - was.get(k, 0)
        return total

    @property
    def packaged_on_vllm(self) -> bool:
        """Whether this run serves the packaged models with vLLM (``spar.llm.packaged_engine``): then
        the models it trains from them are served with vLLM too."""
        from spar.llm import packaged_engine

        return packaged_engine(BackendOptions(extra={"engine": self.cfg.engine.model_dump()})) == "vllm"
