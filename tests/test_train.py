"""Each trainer on the real embedded model for a couple of steps: the weights (or the adapter)
change, and the checkpoint loads."""

import json

import pytest
import torch

from spar.train import TrainSettings, train_dpo, train_sft

pytestmark = pytest.mark.model

PROMPT = [{"role": "user", "content": "Describe tea in one sentence without commas."}]
PAIRS = [{"prompt": PROMPT, "chosen": [{"role": "assistant", "content": "Tea is a warm drink made from leaves."}],
          "rejected": [{"role": "assistant", "content": "Tea is warm, green, and made from leaves."}]}] * 2


@pytest.fixture(scope="module")
def base():
    from spar.llm.embedded import embedded_model_path

    return str(embedded_model_path())


def _weights(path):
    from safetensors.torch import load_file

    files = sorted(p for p in __import__("pathlib").Path(path).glob("*.safetensors"))
    out = {}
    for f in files:
        out.update(load_file(f))
    return out


def _changed(a: dict, b: dict) -> bool:
    common = set(a) & set(b)
    assert common
    return any(not torch.equal(a[k], b[k]) for k in common)


def test_dpo_full_changes_the_weights_and_the_checkpoint_loads(base, tmp_path):
    s = TrainSettings(max_steps=2, learning_rate=1e-5, warmup_ratio=0.0, batch_size=2, max_length=128)
    path, log = train_dpo(base, PAIRS, tmp_path, s)
    assert _changed(_weights(base), _weights(path))
    losses = [x["loss"] for x in log if "loss" in x]
    assert len(losses) == 2 and all(x == x for x in losses)
    saved = json.loads((tmp_path / "train_log.json").read_text())
    assert saved["settings"]["sft_weight"] == 0.1 and saved["settings"]["beta"] == 0.1
    from spar.llm import Sampling
    from spar.llm.hf import HFBackend

    out = HFBackend(str(path)).generate([PROMPT], Sampling(max_new_tokens=8))
    assert isinstance(out[0][0], str)


def test_sft_lora_changes_the_adapter_and_loads(base, tmp_path):
    rows = [{"messages": PROMPT + PAIRS[0]["chosen"]}] * 2
    s = TrainSettings(max_steps=2, learning_rate=1e-3, warmup_ratio=0.0, lora=True, lora_r=4, max_length=128)
    path, _ = train_sft(base, rows, tmp_path, s)
    adapter = _weights(path)
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero; training moved it
    # the folder names its base by the packaged name, not this machine's cache path, so it travels
    assert json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"] == "embedded"
    from spar.llm import Sampling, adapters, context_length, load_backend

    assert context_length(str(path)) == context_length("embedded")
    merged = adapters.load_merged(path)
    plain = _weights(base)
    got = merged.state_dict()
    assert any(not torch.equal(got[k], plain[k]) for k in plain if k in got and "proj" in k)
    out = load_backend(str(path)).generate([PROMPT], Sampling(max_new_tokens=4))
    assert isinstance(out[0][0], str)
    # and it trains on as a model: the merged weights are the starting point
    path2, _ = train_sft(str(path), rows, tmp_path / "again", s.but(lora=False, learning_rate=1e-5))
    assert _changed(_weights(path2), {k: v for k, v in got.items()})
    # a LoRA trained from an adapter stacks on it: it records the adapter as its base, and loading it
    # merges the whole chain (its own update alone on the plain base would be another model)
    path3, _ = train_sft(str(path), rows, tmp_path / "stacked", s)
    assert adapters.base_of(path3) == str(path.resolve())
    chain = adapters.load_merged(path3).state_dict()
    assert _changed(chain, got)
    import shutil

    alone = shutil.copytree(path3, tmp_path / "alone")
    adapters.record_base(alone, "embedded")
    assert _changed(chain, adapters.load_merged(alone).state_dict())
    first_only = {k: chain[k] - got[k] for k in got if "q_proj" in k}  # the chain minus the first merge: path3's own update
    own = {k: v - plain[k] for k, v in adapters.load_merged(alone).state_dict().items() if "q_proj" in k and k in plain}
    k = next(iter(own))
    assert torch.allclose(first_only[k], own[k], atol=1e-5)


def test_sft_full_on_search_built_rft_rows(base, tmp_path):
    from spar.roles.templates import refine_chat

    chat = [m.model_dump() for m in refine_chat("Describe tea without commas.", "Tea is warm, green.", "Commas.\nFinal judgement: No")]
    rows = [{"messages": chat + [{"role": "assistant", "content": "[[start]]\nTea is warm and green.[[end]]"}],
             "origin": {"kind": "refinement"}}] * 2
    path, _ = train_sft(base, rows, tmp_path, TrainSettings(max_steps=2, learning_rate=1e-5, warmup_ratio=0.0, max_length=256))
    assert _changed(_weights(base), _weights(path))


def test_dpo_with_precomputed_reference_trains_and_prints_no_foreign_bar(base, tmp_path, capfd):
    s = TrainSettings(max_steps=2, learning_rate=1e-5, warmup_ratio=0.0, batch_size=2, max_length=128,
                      precompute_ref=True)
    path, log = train_dpo(base, PAIRS, tmp_path, s)
    assert _changed(_weights(base), _weights(path))
    assert len([x for x in log if "loss" in x]) == 2
    out, err = capfd.readouterr()
    assert "Computing reference log probs" not in out + err  # TRL's own tqdm bar


@pytest.mark.slow  # five short trainings with checkpoints: minutes on a 2-core CPU
def test_a_killed_training_resumes_from_its_last_checkpoint_and_a_changed_one_starts_over(base, tmp_path):
    from transformers import TrainerCallback

    class Die(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt  # killed after the checkpoint at step 2

    class First(TrainerCallback):
        step = None

        def on_train_begin(self, args, state, control, **kw):
            pass

        def on_step_begin(self, args, state, control, **kw):
            if First.step is None:
                First.step = state.global_step

    s = TrainSettings(max_steps=4, checkpoints=2, learning_rate=1e-5, warmup_ratio=0.0, batch_size=2, max_length=128)
    with pytest.raises(KeyboardInterrupt):
        train_dpo(base, PAIRS * 2, tmp_path, s, callbacks=[Die()])
    assert [p.name for p in (tmp_path / "trainer").glob("checkpoint-*")] == ["checkpoint-2"]
    path, log = train_dpo(base, PAIRS * 2, tmp_path, s, callbacks=[First()])
    assert First.step == 2  # the first step run was step 3: steps 1-2 came from the checkpoint
    assert path.exists() and not (tmp_path / "trainer").exists()
    assert sorted({x["step"] for x in log if "loss" in x}) == [1, 2, 3, 4]
    # other settings: the old checkpoints are not this training's, so it starts at step 0
    with pytest.raises(KeyboardInterrupt):
        train_dpo(base, PAIRS * 2, tmp_path, s, callbacks=[Die()])
    First.step = None
    train_dpo(base, PAIRS * 2, tmp_path, s.but(learning_rate=2e-5), callbacks=[First()])
    assert First.step == 0


def test_a_training_set_emptied_by_max_length_stops_with_the_reason():
    from types import SimpleNamespace

    from spar.settings import TrainSettings
    from spar.train import _check_kept

    with pytest.raises(ValueError, match="none of the 15 training rows is left at max_length=256"):
        _check_kept(SimpleNamespace(train_dataset=[]), 15, TrainSettings(max_length=256))
    _check_kept(SimpleNamespace(train_dataset=[1]), 15, TrainSettings(max_length=256))  # a row left: no error


def test_dpo_trains_an_in_memory_model_given_instead_of_a_path(base, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = TrainSettings(max_steps=1, learning_rate=1e-5, warmup_ratio=0.0, batch_size=2, max_length=128)
    path, log = train_dpo("no such model", PAIRS, tmp_path, s, save=False, loaded=(model, tok))
    assert path is None and [x["loss"] for x in log if "loss" in x]
    assert _changed(before, model.state_dict())  # the given model itself was trained


def test_merge_rounding_tells_how_much_of_a_lora_update_a_bf16_merge_keeps(base, tmp_path, capsys):
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM

    from spar.train import _record_merge, merge_rounding

    def lora(dtype):
        m = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
        return get_peft_model(m, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))

    def set_b(model, value):
        for x in model.modules():
            if isinstance(x, LoraLayer):
                torch.nn.init.constant_(x.lora_B["default"].weight, value)

    pm = lora(torch.bfloat16)
    set_b(pm, 1e-6)  # an update far below a bf16 step of the weights
    tiny = merge_rounding(pm)
    assert tiny["dtype"] == "bfloat16" and tiny["relative_error"] > 0.9 and tiny["share_rounded_away"] > 0.9
    _record_merge(pm, tmp_path)
    assert json.loads((tmp_path / "merge.json").read_text()) == tiny
    assert "rounded away" in " ".join(capsys.readouterr().err.split())
    set_b(pm, 0.1)  # an update that dwarfs the rounding
    large = merge_rounding(pm)
    assert large["relative_error"] < 0.05 and large["share_rounded_away"] < 0.05
    fp32 = lora(torch.float32)
    set_b(fp32, 1e-6)
    assert merge_rounding(fp32) is None  # an fp32 merge is exact
