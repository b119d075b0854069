"""The vLLM backend: its request mapping against a stand-in ``vllm`` module (always), and the real
engine on the embedded model where vLLM is installed (``make test-vllm``, the CPU build's venv)."""

import sys
import types

import pytest

from spar.llm import BackendOptions, Sampling, request_seed


class _Out:
    def __init__(self, text):
        self.text, self.token_ids = text, list(range(len(text.split())))


class _FakeLLM:
    calls: list = []
    made: list = []

    def __init__(self, **kw):
        _FakeLLM.made.append(kw)
        self.llm_engine = types.SimpleNamespace(engine_core=types.SimpleNamespace(shutdown=lambda: _FakeLLM.made.append("shut")))

    def chat(self, chats, params, use_tqdm=True, add_generation_prompt=True, continue_final_message=False):
        _FakeLLM.calls.append({"chats": chats, "params": params, "add": add_generation_prompt, "cont": continue_final_message})
        return [types.SimpleNamespace(outputs=[_Out(f"{c[-1]['content']} +{j} STOP tail") for j in range(p.n)])
                for c, p in zip(chats, params)]


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM = _FakeLLM
    mod.SamplingParams = lambda **kw: types.SimpleNamespace(**kw)
    monkeypatch.setitem(sys.modules, "vllm", mod)
    for var in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU"):
        monkeypatch.delenv(var, raising=False)  # what the backend sets is undone after the test
    _FakeLLM.calls, _FakeLLM.made = [], []
    return _FakeLLM


def test_requests_map_to_vllm_calls(fake_vllm):
    from spar.llm.vllm_backend import VLLMBackend

    b = VLLMBackend("/models/x", BackendOptions(dtype="bf16", extra={"engine": {"tensor_parallel_size": 2, "max_model_len": 2048}}))
    assert fake_vllm.made == [{"model": "/models/x", "dtype": "bfloat16", "tensor_parallel_size": 2, "pipeline_parallel_size": 1,
                               "enable_prefix_caching": True, "seed": 0, "max_model_len": 2048}]
    ask = [{"role": "user", "content": "q1"}]
    cont = [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "[[start]] half"}]
    ask2 = [{"role": "user", "content": "q3"}]
    got = b.generate([ask, cont, ask2], Sampling(n=2, temperature=0.7, max_new_tokens=9, stop=("STOP",), seed=5))
    # order kept, n samples each, the stop string and what follows cut
    assert got == [["q1 +0 ", "q1 +1 "], ["[[start]] half +0 ", "[[start]] half +1 "], ["q3 +0 ", "q3 +1 "]]
    first, second = fake_vllm.calls
    assert first["add"] and not first["cont"] and [c[-1]["content"] for c in first["chats"]] == ["q1", "q3"]
    assert second["cont"] and not second["add"] and second["chats"] == [cont]  # the assistant prefix is continued
    p = first["params"][0]
    assert (p.n, p.max_tokens, p.stop, p.temperature) == (2, 9, ["STOP"], 0.7)
    # a request's seed comes from the chat, not from its place in the batch
    assert p.seed == request_seed(ask, 5, 0) and first["params"][1].seed == request_seed(ask2, 5, 0)
    b.generate([ask2], Sampling(temperature=0.7, seed=5))
    assert fake_vllm.calls[-1]["params"][0].seed == request_seed(ask2, 5, 0)
    b.generate([ask], Sampling())  # greedy: no seed, top_p 1
    assert fake_vllm.calls[-1]["params"][0].seed is None and fake_vllm.calls[-1]["params"][0].top_p == 1.0
    b.close()
    assert fake_vllm.made[-1] == "shut" and b.llm is None


def test_cpu_settings_become_the_cpu_builds_environment():
    import os

    from spar.llm.vllm_backend import cpu_environment

    assert cpu_environment({}) == {}
    env = cpu_environment({"cpu_kv_cache_gb": 1.6, "cpu_threads_bind": "all"})
    assert env == {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_OMP_THREADS_BIND": f"0-{os.cpu_count() - 1}",
                   "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    assert cpu_environment({"cpu_threads_bind": "0-3"}) == {"VLLM_CPU_OMP_THREADS_BIND": "0-3"}


def test_the_loop_passes_the_recipe_engine_to_vllm_models_only(tmp_path, monkeypatch):
    import spar.pipeline as P
    from spar.config import load_config

    seen = []
    closed = []
    import spar.engines as E

    monkeypatch.setattr(E, "load_backend", lambda model, options: seen.append((model, options.extra)) or types.SimpleNamespace(
        name=model, close=lambda: closed.append(model)))
    run = P.Run(load_config(None, {}), tmp_path / "a", show=False)
    run.backend("embedded")  # no engine settings in the recipe: none passed
    assert seen.pop() == ("embedded", {"engine": {}})
    cfg = load_config(None, {"engine.tensor_parallel_size": 4, "engine.cpu_kv_cache_gb": 2})
    run = P.Run(cfg, tmp_path, show=False)
    run.backend("vllm:/m")
    run.backend("embedded")
    assert seen[0][0] == "vllm:/m" and seen[0][1]["engine"]["tensor_parallel_size"] == 4
    assert seen[1][0] == "embedded" and seen[1][1]["engine"]["cpu_kv_cache_gb"] == 2
    run.backend("vllm:/m")  # one engine per model string
    assert len(seen) == 2
    run.release({"embedded"})  # a released engine stops its processes at once
    assert closed == ["vllm:/m"]


def test_packaged_models_run_on_vllm_where_it_is_installed(fake_vllm, monkeypatch):
    import importlib.util

    from spar.llm import BackendError, load_backend, packaged_engine
    from spar.llm.embedded import packaged_model_path

    monkeypatch.delenv("SPAR_ENGINE", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "vllm" else None)
    assert packaged_engine(BackendOptions()) == "vllm"
    assert packaged_engine(BackendOptions(extra={"engine": {"backend": "hf"}})) == "hf"
    monkeypatch.setenv("SPAR_ENGINE", "hf")
    assert packaged_engine(BackendOptions()) == "hf"
    assert packaged_engine(BackendOptions(extra={"engine": {"backend": "vllm"}})) == "vllm"  # the recipe wins
    monkeypatch.setenv("SPAR_ENGINE", "tpu")
    with pytest.raises(BackendError, match="hf, vllm or auto"):
        packaged_engine(BackendOptions())
    monkeypatch.setenv("SPAR_ENGINE", "auto")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert packaged_engine(BackendOptions()) == "hf"
    monkeypatch.setenv("SPAR_ENGINE", "vllm")
    b = load_backend("embedded")
    assert b.name == "embedded" and fake_vllm.made[-1]["model"] == str(packaged_model_path("embedded"))
    assert b.options.extra["engine"]["cpu_threads_bind"] == "all"  # every core, as the bench measured
    import os

    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "2"  # not 92% of the RAM, vLLM's default


def test_a_missing_vllm_says_how_to_install_it(monkeypatch):
    from spar.llm import BackendError
    from spar.llm.vllm_backend import VLLMBackend

    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(BackendError, match="install-vllm-cpu"):
        VLLMBackend("/m")


# -- the real engine (vLLM installed: make test-vllm) ------------------------------------------------

@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("vllm", reason="vLLM is not installed here (make install-vllm-cpu, then make test-vllm)")
    from spar.llm.embedded import packaged_model_path
    from spar.llm.vllm_backend import VLLMBackend

    b = VLLMBackend(str(packaged_model_path("embedded")), BackendOptions(
        dtype="bf16", extra={"engine": {"max_model_len": 2048, "cpu_kv_cache_gb": 1}}))
    yield b
    b.close()


@pytest.mark.vllm
def test_vllm_continues_an_assistant_prefix_on_the_embedded_model(engine):
    b = engine
    chat = [{"role": "user", "content": "Name three colours."}]
    prefix = "The three colours are red,"
    fresh, cont = b.generate([chat, chat + [{"role": "assistant", "content": prefix}]], Sampling(max_new_tokens=16))
    assert not cont[0].startswith(prefix)  # the completion extends the prefix, it does not repeat it
    assert not cont[0].lstrip().startswith("The three colours")


@pytest.mark.vllm
def test_vllm_samples_n_with_seeds_and_stops(engine):
    b = engine
    chat = [{"role": "user", "content": "Write a sentence about the sea."}]
    s = Sampling(n=3, temperature=1.0, max_new_tokens=24, seed=11)
    a, = b.generate([chat], s)
    again, = b.generate([[{"role": "user", "content": "Say hi."}], chat], s)[1:]
    assert len(a) == 3 and a == again  # the same chat and seed give the same samples, wherever it sits
    other, = b.generate([chat], s.but(seed=12))
    assert other != a
    greedy, = b.generate([chat], Sampling(max_new_tokens=24))
    word = greedy[0].split()[2] if len(greedy[0].split()) > 2 else greedy[0][:3]
    cut, = b.generate([chat], Sampling(max_new_tokens=24, stop=(word,)))
    assert word not in cut[0] and greedy[0].startswith(cut[0])


def test_training_takes_the_weights_and_serves_the_result_as_the_base_was(tmp_path, monkeypatch):
    import json

    import pipeline_harness as H
    import spar.stages as S
    from spar.io import DataError
    from spar.llm.embedded import packaged_model_path

    assert S.model_path("vllm:/w/base") == "/w/base" and S.model_path("vllm:embedded") == str(packaged_model_path("embedded"))
    with pytest.raises(DataError, match="cannot be trained"):
        S.model_path("openai:http://h/v1#m")
    assert S.served_like("vllm:/w/base", "/r/m") == "vllm:/r/m" and S.served_like("/w/base", "/r/m") == "/r/m"
    assert S.served_like("embedded", "/r/m") == "/r/m" and S.served_like("embedded", "/r/m", packaged_on_vllm=True) == "vllm:/r/m"

    trained = []

    def fake_train(kind, base, data, out, s, seed, launcher=None):
        trained.append(base)
        return str(out / "model"), [0.5]

    monkeypatch.setattr(S, "run_train", fake_train)
    H.run(tmp_path, until="iter_2:train_actor", **{"model": "vllm:/w/base", "iterations": 2, "method": "self_rewarding",
                                                   "judge.mode": "verifier"})
    stages = json.loads((tmp_path / "manifest.json").read_text())["stages"]
    assert trained[0] == "vllm:/w/base"  # run_train resolves it with model_path
    assert stages["iter_1:train_actor"]["model"] == f"vllm:{tmp_path}/iter_1/actor/model"
    assert trained[1] == f"vllm:{tmp_path}/iter_1/actor/model"  # iteration 2 trains (and serves) iteration 1's weights
    assert f"vllm:{tmp_path}/iter_1/actor/model" in H.models  # ... served through vLLM, as the base was
