"""KV-cache layouts for the decode half of the hf backend (spar prefills, transformers' generate
decodes with the cache it is handed).

- ReservedLayer: a DynamicLayer with room to grow, so a decode step writes one position in place
  instead of concatenating (a copy of the layer's whole cache at every step).
- SharedPrefixLayer: n samples of each prompt decoding together keep the prompt's keys and values
  once per prompt, not once per sample; `shared_prefix_attention` attends that prefix with the
  queries of all n samples at once, the tokens each sample decoded on its own, and merges the two
  by their log-sum-exp, which equals attending the concatenation.

The attention is registered with transformers as ATTENTION ("spar_sdpa"); for any key that does not
come from a SharedPrefixLayer it is transformers' SDPA attention, unchanged.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION = "spar_sdpa"


class ReservedLayer(DynamicLayer):
    """A DynamicLayer whose keys and values sit in buffers with room to grow; `keys`/`values` are
    views of the filled part. Whatever replaces them from outside (DynamicLayer's batch selections
    and crops) is taken into a new buffer at the next update.
    """

    def __init__(self, room: int):
        super().__init__()
        self.room = max(1, room)
        self.filled = 0
        self._k = self._v = self._view = None

    def _adopt(self, keys: torch.Tensor, values: torch.Tensor, need: int) -> None:
        """Move keys/values into new buffers of `need` positions plus the room."""
        b, h, length, d = keys.shape
        size = need + self.room
        self._k = keys.new_empty(b, h, size, d)
        self._v = values.new_empty(b, h, size, values.shape[-1])
        self._k[:, :, :length], self._v[:, :, :length] = keys, values
        self.filled = length

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        if self.keys is not self._view:  # the first update, or the cache was replaced from outside
            held = self.keys.dim() == 4  # lazy_initialization leaves an empty 1-d tensor
            k, v = (self.keys, self.values) if held else (key_states[:, :, :0], value_states[:, :, :0])
            self._adopt(k, v, k.shape[-2] + new)
        elif self.filled + new > self._k.shape[-2]:  # out of room
            self._adopt(self.keys, self.values, self.filled + new)
        end = self.filled + new
        self._k[:, :, self.filled:end] = key_states
        self._v[:, :, self.filled:end] = value_states
        self.filled = end
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
        self._view = self.keys
        return self.keys, self.values


class SharedPrefixLayer(ReservedLayer):
    """The prompt's keys/values once per prompt (R rows) and, per sample (R*n rows, prompt r's
    samples at rows r*n .. r*n+n-1), the positions decoded after it: a ReservedLayer's buffer.

    `update` returns the per-sample part, tagged with the prefix for shared_prefix_attention. On a
    CPU the layer keeps fp32 (its flash kernel is faster in fp32 than in bf16 for these shapes).
    Decoding only: one query position per step, no batch reordering.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, n: int, room: int):
        super().__init__(room)
        self.store = torch.float32 if keys.device.type == "cpu" else keys.dtype
        self.lazy_initialization(keys, values)  # the per-sample part starts empty
        self.prefix = (keys.to(self.store), values.to(self.store))
        self.n = n

    def get_seq_length(self) -> int:
        return self.prefix[0].shape[-2] + self.filled

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        keys, values = super().update(key_states.to(self.store), value_states.to(self.store))
        keys.spar_prefix = (*self.prefix, self.n)
        return keys, values

    def _fixed(self, *args, **kwargs):
        raise RuntimeError("a SharedPrefixLayer decodes a fixed batch; it cannot be reordered or cropped")

    batch_repeat_interleave = batch_select_indices = crop = reorder_cache = _fixed


def reserve(cache, room: int) -> None:
    """Every plain DynamicLayer of `cache` becomes a ReservedLayer with `room` free positions
    (other layer kinds, e.g. sliding windows, stay as they are)."""
    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer:
            new = ReservedLayer(room)
            if layer.is_initialized:
                new.lazy_initialization(layer.keys, layer.values)
                new.keys, new.values = layer.keys, layer.values
            cache.layers[i] = new


def share_prefix(cache, n: int, room: int) -> bool:
    """Turn a cache holding one row per prompt into one for n samples per prompt that keeps the
    prompt once (SharedPrefixLayer). Only for caches whose every layer is a filled plain
    DynamicLayer; returns False, changing nothing, for any other."""
    layers = cache.layers
    if not layers or any(type(x) is not DynamicLayer or not x.is_initialized or x.keys.dim() != 4 for x in layers):
        return False
    cache.layers = [SharedPrefixLayer(x.keys, x.values, n, room) for x in layers]
    return True


def _additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    if mask is None or mask.dtype != torch.bool:
        return None if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
           scale: float, fused: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output and the log-sum-exp of the scaled, masked scores per query
    (q: B,H,Q,D; k, v: B,H,L,D; mask additive, broadcastable to B,H,Q,L). `fused`: torch's CPU
    flash kernel, which returns both (the default on a CPU); otherwise plain fp32 matmuls."""
    if fused if fused is not None else q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=mask, scale=scale)
        return out, lse
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores + mask.float()
    lse = torch.logsumexp(scores, dim=-1)
    return torch.matmul(torch.softmax(scores, dim=-1), v.float()), lse


def shared_prefix_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, dropout: float = 0.0,
                            scaling: float | None = None, **kwargs):
    """transformers attention function: SDPA, except for keys from a SharedPrefixLayer."""
    shared = getattr(key, "spar_prefix", None)
    if shared is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    extras = [k for k in ("position_bias", "softcap", "s_aux") if kwargs.get(k) is not None]
    if extras or dropout:
        raise RuntimeError(f"shared-prefix attention does not implement {extras or ['dropout']}; this model "
                           "needs its n samples decoded from copies of the prompt's cache")
    pk, pv, n = shared
    b, hq, q_len, d = query.shape
    r, h, lp, _ = pk.shape
    if q_len != 1 or r * n != b:
        raise RuntimeError(f"shared-prefix attention decodes one position for {r}x{n} rows, got {q_len} for {b}")
    g = hq // h
    scale = scaling if scaling is not None else d ** -0.5
    q = query.to(pk.dtype).reshape(b, h, g, d)  # query head j*g+i reads key head j
    pmask = smask = None
    if attention_mask is not None:  # (b, 1, 1, lp + decoded): prompt part, then each sample's own
        pmask = _additive(attention_mask[::n, :, :, :lp], pk.dtype)
        smask = _additive(attention_mask[:, :, :, lp:], pk.dtype)
    # The prompt: all n samples of a prompt (and the g query heads of a key head) query it together.
    qp = q.reshape(r, n, h, g, d).transpose(1, 2).reshape(r, h, n * g, d)
    o1, l1 = attend(qp, pk, pv, pmask, scale)
    o1 = o1.reshape(r, h, n, g, d).transpose(1, 2).reshape(b, h, g, d)
    l1 = l1.reshape(r, h, n, g).transpose(1, 2).reshape(b, h, g)
    o2, l2 = attend(q, key, value, smask, scale)
    top = torch.maximum(l1, l2)
    w1, w2 = (l1 - top).exp().unsqueeze(-1), (l2 - top).exp().unsqueeze(-1)
    out = (o1.float() * w1 + o2.float() * w2) / (w1 + w2)
    return out.to(query.dtype).reshape(b, hq, 1, d).transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, shared_prefix_attention)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)
