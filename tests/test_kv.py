"""spar.llm.kv: the reserved and shared-prefix KV caches, and the attention that reads the latter."""

import functools

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from spar.llm import kv
from spar.llm.hf import pick_dtype


def states(rows, length, heads=3, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, heads, length, dim, generator=g), torch.randn(rows, heads, length, dim, generator=g)


def test_reserved_layer_writes_in_place_and_matches_concatenation():
    layer, ref = kv.ReservedLayer(room=3), DynamicLayer()
    k0, v0 = states(2, 5)
    layer.update(k0, v0), ref.update(k0, v0)
    buffer = layer._k
    for step in range(3):  # within the room: the same buffer, written in place
        k, v = states(2, 1, seed=step + 1)
        got, want = layer.update(k, v), ref.update(k, v)
        assert layer._k is buffer and got[0].data_ptr() == buffer.data_ptr()
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    k, v = states(2, 4, seed=9)  # past the room: a bigger buffer, same contents
    got, want = layer.update(k, v), ref.update(k, v)
    assert layer._k is not buffer and layer._k.shape[2] >= 12
    assert torch.equal(got[0], want[0]) and layer.get_seq_length() == 12


def test_reserved_layer_takes_in_a_cache_replaced_from_outside():
    layer, ref = kv.ReservedLayer(room=4), DynamicLayer()
    for seed in range(2):
        k, v = states(3, 2, seed=seed)
        layer.update(k, v), ref.update(k, v)
    idx = torch.tensor([2, 0])
    layer.batch_select_indices(idx), ref.batch_select_indices(idx)
    k, v = states(2, 1, seed=5)
    got, want = layer.update(k, v), ref.update(k, v)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_reserve_converts_a_filled_dynamic_cache():
    cache = DynamicCache()
    k, v = states(2, 4)
    cache.update(k, v, 0)
    kv.reserve(cache, room=8)
    assert type(cache.layers[0]) is kv.ReservedLayer and cache.get_seq_length() == 4
    k1, v1 = states(2, 1, seed=1)
    keys, _ = cache.update(k1, v1, 0)
    assert torch.equal(keys, torch.cat([k, k1], 2))


def test_share_prefix_refuses_an_empty_cache():
    assert not kv.share_prefix(DynamicCache(), n=3, room=4)


class Module:  # what the attention function reads of a transformers attention module
    num_key_value_groups = 3
    is_causal = True
    training = False


@pytest.mark.parametrize("fused", [True, False])
def test_shared_prefix_attention_equals_attention_over_the_copies(fused, monkeypatch):
    """Prompts of 7 positions (the first two rows left-padded), 3 samples each, 4 decoded positions:
    the same output as SDPA over each sample's own copy of the prompt followed by its own tokens."""
    monkeypatch.setattr(kv, "attend", functools.partial(kv.attend, fused=fused))  # False: other devices' path
    r, n, hkv, g, d, lp, ls = 2, 3, 3, 3, 8, 7, 4
    pk, pv = states(r, lp, hkv, d)
    layer = kv.SharedPrefixLayer(pk, pv, n, room=2)  # room 2 < 4: also grows
    for step in range(ls):
        sk, sv = states(r * n, 1, hkv, d, seed=10 + step)
        keys, values = layer.update(sk, sv)
    assert layer.get_seq_length() == lp + ls and keys.shape[2] == ls
    mask = torch.ones(r * n, 1, 1, lp + ls, dtype=torch.bool)
    mask[:n, :, :, :2] = False  # the first prompt's two pads
    q = torch.randn(r * n, hkv * g, 1, d, generator=torch.Generator().manual_seed(3))
    out, _ = kv.shared_prefix_attention(Module(), q, keys, values, mask, scaling=d ** -0.5)
    full_k = torch.cat([pk.repeat_interleave(n, 0), keys], 2).repeat_interleave(g, 1)
    full_v = torch.cat([pv.repeat_interleave(n, 0), values], 2).repeat_interleave(g, 1)
    want = F.scaled_dot_product_attention(q, full_k, full_v, attn_mask=mask).transpose(1, 2)
    assert out.shape == want.shape and torch.allclose(out, want, atol=1e-5)


def test_attention_without_a_shared_prefix_is_sdpa():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)
    Module.num_key_value_groups = 1
    try:
        out, _ = kv.shared_prefix_attention(Module(), q, k, v, None, scaling=0.3)
    finally:
        Module.num_key_value_groups = 3
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3).transpose(1, 2)
    assert torch.allclose(out, want, atol=1e-6)


def test_dtype_default_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(kv.torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert pick_dtype(None, "cpu") == torch.bfloat16
    monkeypatch.setattr(kv.torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(kv.torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert pick_dtype(None, "cpu") == torch.float32
    assert pick_dtype("fp32", "cuda") == torch.float32 and pick_dtype(None, "cuda") == torch.bfloat16


def test_a_shared_prefix_cache_refuses_reordering():
    pk, pv = states(2, 4)
    layer = kv.SharedPrefixLayer(pk, pv, n=2, room=3)
    with pytest.raises(RuntimeError, match="fixed batch"):
        layer.batch_select_indices(torch.tensor([0]))
