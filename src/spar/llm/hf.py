"""transformers backend: batched generation with left padding, n completions from one prefill."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from spar.llm import BackendError, BackendOptions, ChatLike, OnBatch, Sampling, as_dicts, cut_at_stop

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp16": torch.float16, "float16": torch.float16}


def pick_device(device: str | None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: str | None, device: str) -> torch.dtype:
    # bf16 on a CPU without native bf16 is ~12x slower than fp32 (measured on this 2-core machine).
    if dtype is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in _DTYPES:
        raise BackendError(f"unknown dtype {dtype!r}; choose one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


class HFBackend:
    def __init__(self, model: str, options: BackendOptions | None = None, name: str | None = None,
                 loaded: tuple[object, object] | None = None):
        self.options = options or BackendOptions()
        self.name = name or model
        self.device = pick_device(self.options.device)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # spar draws its own bars; the per-load one is noise
        if loaded is not None:  # an in-memory model (e.g. right after training)
            self.model, self.tokenizer = loaded
        else:
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(model)
                self.model = AutoModelForCausalLM.from_pretrained(
                    model, dtype=pick_dtype(self.options.dtype, self.device)
                ).to(self.device)
            except OSError as e:
                raise BackendError(f"cannot load model {model!r}: {e}") from None
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.tokenizer.chat_template is None:
            raise BackendError(f"model {model!r} has no chat template; spar needs an instruct/chat model")
        self._eos = self._eos_ids()

    def _eos_ids(self) -> list[int]:
        ids = set()
        for src in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if isinstance(src, int):
                ids.add(src)
            elif src:
                ids.update(src)
        end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")  # ChatML end of turn
        if isinstance(end, int) and end != self.tokenizer.unk_token_id:
            ids.add(end)
        return sorted(ids)

    def encode(self, chat: ChatLike) -> list[int]:
        msgs = as_dicts(chat)
        # A chat that ends with an assistant turn is continued (a prefilled answer), not answered anew.
        prefill = msgs[-1]["role"] == "assistant"
        out = self.tokenizer.apply_chat_template(msgs, add_generation_prompt=not prefill, continue_final_message=prefill,
                                                 tokenize=True)
        if isinstance(out, dict) or hasattr(out, "input_ids"):
            out = out["input_ids"]
        return list(out)

    @torch.inference_mode()
    def generate(self, requests: Sequence[ChatLike], sampling: Sampling, on_batch: OnBatch | None = None) -> list[list[str]]:
        encoded = [self.encode(r) for r in requests]
        # Sorting by length keeps padding (wasted compute) small inside each batch.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        # Each batch row becomes n rows after the prefill, so keep rows*n near the batch size.
        bs = max(1, self.options.batch_size // sampling.n) if sampling.n > 1 else self.options.batch_size
        results: list[list[str]] = [[] for _ in requests]
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            texts, ntok = self._generate_batch([encoded[i] for i in idx], sampling, seed=sampling.seed + start)
            for j, i in enumerate(idx):
                results[i] = texts[j]
            if on_batch:
                on_batch(len(idx), ntok)
        return results

    def _prefill(self, ids: torch.Tensor, mask: torch.Tensor, n: int):
        """KV cache of every prompt token but the last (generate feeds that one), repeated n times."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)  # positions as generate computes them under left padding
        self.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1],
                   past_key_values=cache, use_cache=True)
        cache.batch_repeat_interleave(n)
        return cache

    def _generate_batch(self, batch: list[list[int]], sampling: Sampling, seed: int) -> tuple[list[list[str]], int]:
        pad = self.tokenizer.pad_token_id
        width = max(len(x) for x in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, x in enumerate(batch):
            ids[r, width - len(x):] = torch.tensor(x)
            mask[r, width - len(x):] = 1
        kwargs = dict(
            max_new_tokens=sampling.max_new_tokens,
            num_return_sequences=sampling.n,
            eos_token_id=self._eos,
            pad_token_id=pad,
        )
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        ids, mask = ids.to(self.device), mask.to(self.device)
        if sampling.n > 1:
            # One prefill for all n samples: run the prompt once, copy its KV cache n times, and
            # let generate continue from it (generate alone would prefill each copy again).
            kwargs.update(num_return_sequences=1, past_key_values=self._prefill(ids, mask, sampling.n))
            ids, mask = ids.repeat_interleave(sampling.n, 0), mask.repeat_interleave(sampling.n, 0)
        torch.manual_seed(seed)
        out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        new = out[:, width:].cpu()
        texts, ntok = [], 0
        for row in new:
            toks = row.tolist()
            n = len(toks)
            for k, t in enumerate(toks):
                if t in self._eos:
                    n = k
                    break
            ntok += n
            text = self.tokenizer.decode(toks[:n], skip_special_tokens=True)
            texts.append(cut_at_stop(text, sampling.stop))
        grouped = [texts[r * sampling.n:(r + 1) * sampling.n] for r in range(len(batch))]
        return grouped, ntok
