"""The hf backend on the real embedded model (SmolLM2-135M-Instruct)."""

import dataclasses

import pytest

from spar.llm import Sampling

pytestmark = pytest.mark.model

PROMPTS = [
    "Name a colour.",
    "Write a haiku about autumn. Use no commas.",
    "What is 2 + 2? Answer with one word.",
    "Give me one tip for sleeping better, in under twenty words.",
    "Say hello in French.",
    "List three fruits, separated by semicolons.",
    "Describe the sea in one sentence without using the letter e.",
    "Tell me a fun fact about owls.",
]
CHATS = [[{"role": "user", "content": p}] for p in PROMPTS]


def test_greedy_is_reproducible(embedded):
    s = Sampling(max_new_tokens=24, seed=3)
    assert embedded.generate(CHATS[:2], s) == embedded.generate(CHATS[:2], s)


def test_sampling_is_reproducible_with_a_seed(embedded):
    s = Sampling(n=2, temperature=0.9, top_p=0.9, max_new_tokens=16, seed=11)
    first = embedded.generate(CHATS[:2], s)
    assert first == embedded.generate(CHATS[:2], s)


def test_a_sampled_request_gives_the_same_text_whatever_batch_it_lands_in(embedded):
    """Seeds are per request (its tokens, the seed, the sample index), not per batch."""
    s = Sampling(n=2, temperature=0.9, top_p=0.9, max_new_tokens=16, seed=5)
    alone = embedded.generate(CHATS[2:3], s)[0]
    in_batch = embedded.generate(CHATS, s)[2]  # another batch size, other neighbours, another position
    reordered = embedded.generate([CHATS[5], CHATS[2], CHATS[0]], s)[1]
    assert alone == in_batch == reordered
    # sample j of an n-sample request is the single sample of the same request at seed + j
    assert [embedded.generate(CHATS[2:3], s.but(n=1, seed=5 + j))[0][0] for j in range(2)] == alone
    assert embedded.generate(CHATS[2:3], s.but(seed=6))[0] != alone


def test_n_completions_from_one_request(embedded):
    out = embedded.generate(CHATS[:1], Sampling(n=4, temperature=1.0, max_new_tokens=16, seed=0))
    assert len(out) == 1 and len(out[0]) == 4
    assert len(set(out[0])) > 1, "four samples at temperature 1 should not all be equal"


def test_batch_of_8_equals_one_by_one_under_greedy(embedded):
    s = Sampling(max_new_tokens=24)
    batched = embedded.generate(CHATS, s)
    single = [embedded.generate([c], s)[0] for c in CHATS]
    assert batched == single


def test_stop_strings_cut_the_text(embedded):
    full = embedded.generate(CHATS[5:6], Sampling(max_new_tokens=32))[0][0]
    assert len(full) > 4
    stop = full[2:4]
    cut = embedded.generate(CHATS[5:6], Sampling(max_new_tokens=32, stop=(stop,)))[0][0]
    assert stop not in cut and full.startswith(cut)


def test_shared_prefill_gives_the_same_greedy_text_as_one_request(embedded):
    s = Sampling(max_new_tokens=20)
    single = embedded.generate(CHATS[:3], s)
    many = embedded.generate(CHATS[:3], s.but(n=3))  # n > 1 takes the one-prefill path
    assert many == [[x[0]] * 3 for x in single]


def test_requests_sharing_a_prefix_give_the_same_greedy_text_as_alone(embedded):
    from spar.llm.hf import batch_order, prefill_plan
    from spar.roles.templates import judge_chat

    poem = "Write a short poem about the sea in exactly three lines, with no commas, ending with the word 'blue'."
    fruit = "List three fruits separated by semicolons and nothing else."
    chats = [judge_chat(poem, a) for a in ("The sea is wide\nThe waves are high\nThe sky is blue",
                                           "Waves crash, and roll.\nIt is blue.", "Sea\nSea\nblue")]
    chats += [judge_chat(fruit, a) for a in ("apple; pear; plum", "Apple, banana, cherry")]
    encoded = [embedded.encode(c) for c in chats]
    plan = prefill_plan([encoded[i] for i in batch_order(encoded)])
    assert [len(level) for level in plan] == [1, 2, 5], "one common prefix, a group per instruction, a rest per row"
    s = Sampling(max_new_tokens=24)
    assert embedded.generate(chats, s) == [embedded.generate([c], s)[0] for c in chats]


def test_usage_counts_what_the_backend_ran(embedded):
    from spar.roles.templates import judge_chat

    chats = [judge_chat("List three fruits separated by semicolons and nothing else.", a)
             for a in ("apple; pear; plum", "Apple, banana, cherry", "kiwi;lime;fig")]
    before = dataclasses.replace(embedded.usage)
    reported = []
    embedded.generate(chats, Sampling(max_new_tokens=8), on_batch=lambda rows, ntok: reported.append(ntok))
    u = embedded.usage
    prompt = sum(len(embedded.encode(c)) for c in chats)
    assert u.prompt_tokens - before.prompt_tokens == prompt
    assert u.new_tokens - before.new_tokens == sum(reported) > 0
    # the three judge prompts share the template and the instruction: prefilled once, not three times
    assert 0 < u.prefill_positions - before.prefill_positions < prompt - len(chats)
    assert u.prefill_seconds > before.prefill_seconds


def test_bf16_shares_each_prompt_between_its_samples():
    """bf16 (the default on CPUs with native bf16) with n samples: the shared-prefix cache and
    attention run (spar.llm.kv) and the samples read as text of the prompt's kind."""
    import torch

    from spar.llm import BackendOptions, load_backend
    from spar.llm import kv

    backend = load_backend("embedded", BackendOptions(batch_size=8, dtype="bf16"))
    assert backend.model.dtype == torch.bfloat16 and backend.model.config._attn_implementation == kv.ATTENTION
    shared = []
    real = kv.shared_prefix_attention

    def spy(module, query, key, *args, **kwargs):
        shared.append(hasattr(key, "spar_prefix"))
        return real(module, query, key, *args, **kwargs)

    kv.AttentionInterface.register(kv.ATTENTION, spy)
    try:
        out = backend.generate(CHATS[4:6], Sampling(n=2, max_new_tokens=12))
    finally:
        kv.AttentionInterface.register(kv.ATTENTION, real)
    assert any(shared) and not all(shared)  # prefill: plain SDPA; decode: the shared prefix
    assert [len(x) for x in out] == [2, 2] and out[0][0] == out[0][1]  # greedy: both samples alike
    assert "bonjour" in out[0][0].lower() and "fruit" in out[1][0].lower()  # broken attention babbles


def test_requests_beyond_the_context_or_the_memory_bound_are_refused_up_front(embedded):
    from spar.llm import BackendError

    chat = [{"role": "user", "content": "hi"}]
    before = embedded.usage.prompt_tokens
    with pytest.raises(BackendError, match="exceeds the model's context of 8192"):
        embedded.generate([chat], Sampling(max_new_tokens=1_000_000))
    with pytest.raises(BackendError, match="GiB of KV cache"):
        embedded.generate([chat], Sampling(n=1000, max_new_tokens=8000, temperature=1.0))
    assert embedded.usage.prompt_tokens == before  # refused before anything ran


def test_serve_answers_400_to_a_request_the_model_cannot_take(embedded):
    from fastapi.testclient import TestClient

    from spar.serve import build_app

    client = TestClient(build_app(embedded, "embedded"))
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**9})
    assert r.status_code == 400 and "context" in r.json()["detail"]
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert r.status_code == 200


def test_serve_validates_roles_stop_strings_and_seeds(embedded):
    from fastapi.testclient import TestClient

    from spar.serve import build_app

    client = TestClient(build_app(embedded, "embedded"))
    msg = [{"role": "user", "content": "hi"}]
    for bad in ({"messages": [{"role": "wizard", "content": "hi"}]}, {"messages": msg, "stop": ""},
                {"messages": msg, "stop": ["ok", ""]}, {"messages": msg, "seed": 2**70}):
        assert client.post("/v1/chat/completions", json={"max_tokens": 4, **bad}).status_code == 422, bad
