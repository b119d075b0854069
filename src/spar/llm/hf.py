"""transformers backend: batched generation with left padding; spar runs the prefill itself so that
n completions share one prefill and prompts that begin alike share the prefill of their common
prefix (prefill_plan), then lets generate decode with spar's KV cache (spar.llm.kv: room to grow,
and one copy of a prompt for its n samples); sampling is NucleusSampler's."""

from __future__ import annotations

import hashlib
import inspect
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor, LogitsProcessorList

from spar.llm import BackendError, BackendOptions, ChatLike, OnBatch, Sampling, as_dicts, cut_at_stop
from spar.llm.kv import ATTENTION, reserve, share_prefix

from spar.llm.devices import _DTYPES, cpu_has_bf16, pick_device, pick_dtype  # noqa: F401 (re-exported)


MIN_SHARED = 48  # leading tokens two requests must share to be kept in one batch
MIN_EXTRA = 16  # tokens beyond the batch's common prefix that make neighbouring rows a group


def _common(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def batch_order(encoded: list[list[int]]) -> list[int]:
    """The order requests go into batches: requests sharing their first MIN_SHARED tokens stay
    next to each other (so their prefix can be prefilled once), and the runs of such requests go
    shortest first (so padding, which is wasted compute, stays small inside a batch)."""
    lex = sorted(range(len(encoded)), key=lambda i: encoded[i])
    runs: list[list[int]] = []
    for i in lex:
        if runs and _common(encoded[runs[-1][-1]], encoded[i]) >= MIN_SHARED:
            runs[-1].append(i)
        else:
            runs.append([i])
    runs.sort(key=lambda run: max(len(encoded[i]) for i in run))
    return [i for run in runs for i in run]


@dataclass
class Usage:
    """What a backend has run so far, for benchmarks: prompt tokens of the requests (once a request,
    whatever n), token positions prefilled (padding included, shared prefixes once), seconds in
    prefill (host wall time: on a GPU, which runs asynchronously, it undercounts), and tokens
    generated."""

    prompt_tokens: int = 0
    prefill_positions: int = 0
    prefill_seconds: float = 0.0
    new_tokens: int = 0


class Unit(NamedTuple):
    """A run of prompt tokens prefilled once: tokens [end of its parent, end) of batch row `row`."""

    parent: int  # index of the unit it extends in the level before (0 on the first level)
    row: int
    end: int


def prefill_plan(batch: list[list[int]]) -> list[list[Unit]]:
    """How to prefill a batch (every prompt token but the last, which generate feeds), as levels of
    a shallow trie: the prefix common to the whole batch (one unit), the longer prefixes that runs
    of neighbouring rows share (one unit a group: the judgments of answers to one instruction, the
    refinements of one tree), and each row's own rest (one unit a row, in row order). Plain left
    padding (one level) when that runs fewer token positions, padding included.
    """
    rows = len(batch)
    ends = [len(x) - 1 for x in batch]
    common = min(ends)
    for r in range(1, rows):
        common = min(common, _common(batch[0], batch[r]))
    groups: list[tuple[int, list[int]]] = []  # (end of the prefix the group shares, its rows)
    for r in range(rows):
        c = _common(batch[groups[-1][1][-1]], batch[r]) if groups else 0
        if c >= common + MIN_EXTRA:
            end, members = groups[-1]
            groups[-1] = (min(end, c, ends[r]), members + [r])
        else:
            groups.append((ends[r], [r]))
    groups = [(end if len(members) > 1 else common, members) for end, members in groups]
    group_of = {r: g for g, (_, members) in enumerate(groups) for r in members}
    trie_cost = common + len(groups) * max(end - common for end, _ in groups) + rows * max(
        ends[r] - groups[group_of[r]][0] for r in range(rows))
    if trie_cost >= rows * max(ends):
        return [[Unit(0, r, ends[r]) for r in range(rows)]]
    return [[Unit(0, 0, common)],
            [Unit(0, members[0], end) for end, members in groups],
            [Unit(group_of[r], r, ends[r]) for r in range(rows)]]


class NucleusSampler(LogitsProcessor):
    """Temperature + top-p sampling done inside a logits processor, for generate in greedy mode.

    It draws the next token and leaves only that token finite, so greedy decoding picks it. The
    distribution is the one transformers' sampling uses (temperature, then the smallest set of top
    tokens whose probability reaches top_p, renormalised), but it is cheaper on a CPU: transformers
    sorts the whole vocabulary (49k tokens for SmolLM2) of every row at every step and then draws
    from all of it (bench/generation.py times both samplers). Here the candidates come from a
    top-k of `first_k` tokens; only a row whose top `first_k` tokens do not reach top_p (a very
    flat distribution) is sorted in full.
    """

    def __init__(self, temperature: float, top_p: float, first_k: int = 256,
                 generators: list[torch.Generator] | None = None):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 to sample, got {temperature}")
        self.temperature, self.top_p, self.first_k = temperature, top_p, first_k
        self.generators = generators  # one per row: a row's draws do not depend on the other rows

    def parts(self, scores: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        """The rows in groups, each (row numbers, candidate token ids best first or None for the
        whole vocabulary in order, their probabilities with zeros where top-p cuts): the rows whose
        top `first_k` reach top_p, and the others, sorted in full. Only the latter pay for the
        vocabulary. A token is kept when the probability of the tokens ranked above it is below
        top_p, which is transformers' rule (it drops the tokens whose ascending cumulative mass is
        <= 1 - top_p).
        """
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        rows = torch.arange(len(probs), device=probs.device)
        if self.top_p >= 1.0:  # no cut: every token, as it is
            return [(rows, None, probs)]
        k = min(self.first_k, probs.shape[-1])
        vals, idx = torch.topk(probs, k, dim=-1)
        short = vals.sum(-1) < self.top_p  # the top k do not reach top_p: these rows need every token
        if k == probs.shape[-1] or not bool(short.any()):
            return [(rows, idx, self._cut(vals))]
        full_vals, full_idx = torch.sort(probs[short], dim=-1, descending=True)
        return [(rows[~short], idx[~short], self._cut(vals[~short])), (rows[short], full_idx, self._cut(full_vals))]

    def _cut(self, vals: torch.Tensor) -> torch.Tensor:
        above = vals.cumsum(-1) - vals  # mass of the tokens ranked above each one
        # The best token always stays: nothing ranks above it, and top_p > 0.
        return torch.where(above < self.top_p, vals, torch.zeros_like(vals))

    def kept(self, scores: torch.Tensor) -> torch.Tensor:
        """Which tokens each row may draw (rows x vocabulary, boolean)."""
        mask = torch.zeros_like(scores, dtype=torch.bool)
        for rows, idx, vals in self.parts(scores):
            if idx is None:
                mask[rows] = vals > 0
            else:
                mask[rows] = mask[rows].scatter(1, idx, vals > 0)
        return mask

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        out = torch.full_like(scores, float("-inf"))
        for rows, idx, vals in self.parts(scores):
            if not len(rows):
                continue
            if self.generators is None:
                pick = torch.multinomial(vals, 1)
            else:
                pick = torch.cat([torch.multinomial(vals[i:i + 1], 1, generator=self.generators[int(r)])
                                  for i, r in enumerate(rows)])
            out[rows, (pick if idx is None else idx.gather(1, pick)).squeeze(1)] = 0.0
        return out


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
                from spar.llm import adapters

                dtype = pick_dtype(self.options.dtype, self.device)
                if adapters.is_adapter(model):  # a LoRA folder: its base with the adapter merged in
                    self.tokenizer = AutoTokenizer.from_pretrained(adapters.tokenizer_folder(model))
                    self.model = adapters.load_merged(model, dtype).to(self.device)
                else:
                    self.tokenizer = AutoTokenizer.from_pretrained(model)
                    self.model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(self.device)
            except OSError as e:
                raise BackendError(f"cannot load model {model!r}: {e}") from None
        self.model.eval()
        # SDPA with a shared-prefix path for n samples (spar.llm.kv); other attentions keep n copies.
        self._shared = self.model.config._attn_implementation == "sdpa"
        if self._shared:
            self.model.set_attn_implementation(ATTENTION)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.tokenizer.chat_template is None:
            raise BackendError(f"model {model!r} has no chat template; spar needs an instruct/chat model")
        self._eos = self._eos_ids()
        # transformers 5.2x renamed the cache argument of forward/generate to `cache` and warns on every
        # call that passes `past_key_values`; older releases (vLLM's CPU venv pins < 5.20) know only that.
        self._cache_kw = "cache" if "cache" in inspect.signature(type(self.model).forward).parameters else "past_key_values"
        self.usage = Usage()

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

    def check(self, requests: Sequence[ChatLike], sampling: Sampling) -> None:
        """What generate would refuse, refused before a stage starts (and before its output exists)."""
        self.check_bounds([self.encode(r) for r in requests], sampling)

    @torch.inference_mode()
    def generate(self, requests: Sequence[ChatLike], sampling: Sampling, on_batch: OnBatch | None = None) -> list[list[str]]:
        encoded = [self.encode(r) for r in requests]
        self.check_bounds(encoded, sampling)
        self.usage.prompt_tokens += sum(map(len, encoded))
        order = batch_order(encoded)
        # Each batch row becomes n rows after the prefill, so keep rows*n near the batch size.
        bs = max(1, self.options.batch_size // sampling.n) if sampling.n > 1 else self.options.batch_size
        results: list[list[str]] = [[] for _ in requests]
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            texts, ntok = self._generate_batch([encoded[i] for i in idx], sampling)
            self.usage.new_tokens += ntok
            for j, i in enumerate(idx):
                results[i] = texts[j]
            if on_batch:
                on_batch(len(idx), ntok)
        return results

    def kv_bytes_per_token(self) -> int:
        c = self.model.config
        heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        return 2 * c.num_hidden_layers * heads * head_dim * torch.finfo(self.model.dtype).bits // 8

    def check_bounds(self, encoded: list[list[int]], sampling: Sampling) -> None:
        """Refuse, before anything is allocated, a request longer than the model's context or one
        whose KV cache would not fit in memory (the cache reserves room for every token asked for)."""
        ctx = getattr(self.model.config, "max_position_embeddings", None)
        longest = max(map(len, encoded), default=0)
        if ctx and longest + sampling.max_new_tokens > ctx:
            raise BackendError(f"a request of {longest} prompt tokens with max_new_tokens {sampling.max_new_tokens} "
                               f"exceeds the model's context of {ctx} tokens")
        need = sampling.n * (longest + sampling.max_new_tokens) * self.kv_bytes_per_token()
        if need > self.options.max_kv_bytes:
            raise BackendError(f"one request would need {need / 2**30:.1f} GiB of KV cache ({sampling.n} samples x "
                               f"{longest + sampling.max_new_tokens} tokens); the bound is {self.options.max_kv_bytes / 2**30:.1f} GiB "
                               "(BackendOptions.max_kv_bytes)")

    def _left_pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max((len(x) for x in seqs), default=0)
        ids = torch.full((len(seqs), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, x in enumerate(seqs):
            if x:
                ids[r, width - len(x):] = torch.tensor(x)
                mask[r, width - len(x):] = 1
        return ids, mask

    def _prefill(self, batch: list[list[int]]):
        """The KV cache of every prompt token but the last, following prefill_plan: each shared
        prefix runs once and its cache is copied to the units that extend it. A row ends up laid
        out as [pad | common prefix | pad | group prefix | pad | own rest | last token]; the mask
        hides the pads and the positions skip them, so the model sees exactly the unpadded prompt.
        Returns the input ids and mask generate must be given with the cache.
        """
        from transformers import DynamicCache

        start = time.perf_counter()
        cache = DynamicCache(config=self.model.config)
        ids = mask = ends = None
        for level in prefill_plan(batch):
            pieces = [batch[u.row][(ends[u.parent] if ends else 0):u.end] for u in level]
            new_ids, new_mask = self._left_pad(pieces)
            if ids is None:
                ids, mask = new_ids[:, :0], new_mask[:, :0]
            else:
                parent = torch.tensor([u.parent for u in level])
                ids, mask = ids[parent], mask[parent]
                cache.batch_select_indices(parent.to(self.device))  # a no-op while the cache is empty
            ids, mask = torch.cat([ids, new_ids], 1), torch.cat([mask, new_mask], 1)
            if new_ids.shape[1]:
                self.usage.prefill_positions += new_ids.numel()
                pos = (mask.cumsum(-1) - 1).clamp(min=0)  # positions as generate computes them
                w = new_ids.shape[1]
                self.model(input_ids=new_ids.to(self.device), attention_mask=mask.to(self.device),
                           position_ids=pos[:, -w:].to(self.device), use_cache=True, logits_to_keep=1,
                           **{self._cache_kw: cache})
            ends = [u.end for u in level]
        last = torch.tensor([[x[-1]] for x in batch])
        ids, mask = torch.cat([ids, last], 1), torch.cat([mask, torch.ones_like(last)], 1)
        self.usage.prefill_seconds += time.perf_counter() - start
        return ids.to(self.device), mask.to(self.device), cache

    def _generators(self, batch: list[list[int]], sampling: Sampling) -> list[torch.Generator]:
        """A generator per row, seeded from the request's tokens, the seed and the sample index j
        (seed + j: sample j of an n-sample request is the one sample of the same request at seed + j),
        so a request draws the same samples whatever batch it lands in."""
        gens = []
        for tokens in batch:
            base = int.from_bytes(hashlib.blake2b(array("q", tokens).tobytes(), digest_size=7).digest(), "little")
            for j in range(sampling.n):
                g = torch.Generator(device=self.device)
                g.manual_seed((base + sampling.seed + j) % (1 << 62))
                gens.append(g)
        return gens

    def _generate_batch(self, batch: list[list[int]], sampling: Sampling) -> tuple[list[list[str]], int]:
        pad = self.tokenizer.pad_token_id
        ids, mask, cache = self._prefill(batch)
        width = ids.shape[1]
        room = sampling.max_new_tokens + 1  # decode steps write into the cache in place
        if sampling.n > 1:  # one prefill for all n samples: they share its cache, or get a copy each
            if not (self._shared and share_prefix(cache, sampling.n, room)):
                cache.batch_repeat_interleave(sampling.n)
                reserve(cache, room)
            ids, mask = ids.repeat_interleave(sampling.n, 0), mask.repeat_interleave(sampling.n, 0)
        else:
            reserve(cache, room)
        kwargs = dict(
            max_new_tokens=sampling.max_new_tokens,
            num_return_sequences=1,
            eos_token_id=self._eos,
            pad_token_id=pad,
        )
        kwargs[self._cache_kw] = cache  # generate only feeds the last prompt token and decodes
        # Sampling happens in NucleusSampler; generate itself always decodes greedily (see its docstring).
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if sampling.temperature > 0:
            kwargs.update(logits_processor=LogitsProcessorList([NucleusSampler(sampling.temperature, sampling.top_p,
                                                                               generators=self._generators(batch, sampling))]))
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
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
