"""vLLM's offline engine (extra ``vllm``; needs a CUDA machine). Model string ``vllm:<path or id>``."""

from __future__ import annotations

from collections.abc import Sequence

from spar.llm import BackendError, BackendOptions, ChatLike, OnBatch, Sampling, as_dicts


class VLLMBackend:
    def __init__(self, model: str, options: BackendOptions | None = None):
        try:
            from vllm import LLM
        except ImportError:
            raise BackendError("the vllm backend needs the extra: pip install 'spar-lm[vllm]' (on a GPU machine)") from None
        self.options = options or BackendOptions()
        self.name = f"vllm:{model}"
        names = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # spar's short names, vLLM's long ones
        dtype = names.get(self.options.dtype or "", self.options.dtype or "auto")
        self.llm = LLM(model=model, dtype=dtype,
                       tensor_parallel_size=int(self.options.extra.get("tensor_parallel_size", 1)))

    def generate(self, requests: Sequence[ChatLike], sampling: Sampling, on_batch: OnBatch | None = None) -> list[list[str]]:
        from vllm import SamplingParams

        params = SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                                max_tokens=sampling.max_new_tokens, stop=list(sampling.stop) or None,
                                seed=sampling.seed)
        outs = self.llm.chat([as_dicts(r) for r in requests], params, use_tqdm=False)
        if on_batch:
            on_batch(len(requests), sum(len(c.token_ids) for o in outs for c in o.outputs))
        return [[c.text for c in o.outputs] for o in outs]
