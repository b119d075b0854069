"""NucleusSampler keeps exactly the tokens transformers' temperature + top-p warpers keep, and
draws from them in proportion to their probability."""

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from spar.llm.hf import NucleusSampler


def kept_mask(sampler: NucleusSampler, scores: torch.Tensor) -> torch.Tensor:
    return sampler.kept(scores)


@pytest.mark.parametrize("scale", [1.0, 3.0, 10.0, 30.0])  # flat (fallback to a full sort) .. peaked
@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.3])
@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.95, 1.0])
def test_kept_tokens_equal_transformers_warpers(scale, temperature, top_p):
    gen = torch.Generator().manual_seed(int(scale * 100 + temperature * 10 + top_p * 1000))
    scores = torch.randn(16, 3000, generator=gen) * scale
    ref = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, scores.clone()))
    expected = torch.softmax(ref, -1) > 0  # a token whose probability underflows to 0 cannot be drawn either way
    got = kept_mask(NucleusSampler(temperature, top_p, first_k=64), scores)
    assert torch.equal(got, expected)


def test_the_fallback_rows_and_the_fast_rows_mix_in_one_batch():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 2000, generator=gen)
    scores[::2] *= 40  # peaked rows: top 32 reach top_p; flat rows: they do not
    ref = TopPLogitsWarper(0.9)(None, scores.clone())
    sampler = NucleusSampler(1.0, 0.9, first_k=32)
    assert [len(rows) for rows, _, _ in sampler.parts(scores)] == [3, 3]  # fast rows, then the sorted ones
    assert torch.equal(kept_mask(sampler, scores), torch.softmax(ref, -1) > 0)
    torch.manual_seed(0)
    picks = sampler(None, scores).argmax(-1)  # each row draws from its own kept set
    assert bool(kept_mask(sampler, scores).gather(1, picks[:, None]).all())


def test_leaves_one_finite_token_per_row_drawn_from_the_kept_set():
    torch.manual_seed(0)
    scores = torch.tensor([[5.0, 4.0, 0.0, -3.0]] * 4000)
    out = NucleusSampler(1.0, 0.9)(None, scores)
    assert bool((torch.isfinite(out).sum(-1) == 1).all())
    picks = out.argmax(-1)
    # p = softmax([5, 4, 0, -3]) = [.727, .268, .005, .0002]: top-p 0.9 keeps tokens 0 and 1 only
    assert set(picks.tolist()) == {0, 1}
    share = (picks == 0).float().mean().item()
    assert abs(share - 0.727 / (0.727 + 0.268)) < 0.03


def test_rejects_a_zero_temperature():
    with pytest.raises(ValueError, match="temperature"):
        NucleusSampler(0.0, 0.9)
