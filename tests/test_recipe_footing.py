"""Baselines on SPaR's footing: every baseline recipe shares SPaR's sections (prompts, sampling,
training, launcher, engine, evaluation, ...) except what the method itself changes, and each such
difference is named here with its reason. A new difference fails until it is either removed or
added to ALLOWED with a reason."""

from pathlib import Path

import pytest

from spar.config import load_config

RECIPES = Path(__file__).resolve().parents[1] / "src" / "spar" / "recipes"
REFERENCE = {"llama3-8b": "spar.yaml", "smollm2-135m": "full.yaml"}
# the run's identity and sections only SPaR or only one baseline reads
OWN = {"name", "method", "refiner", "search", "negatives", "rft", "train_refiner", "bootstrap", "reward", "self_refine",
       "autoif", "rlvr", "judge"}
ALLOWED = {
    ("llama3-8b", "spar-1gpu.yaml", "prompts"): "one GPU: 1,000 prompts instead of 8,000 so an iteration fits a day",
    ("llama3-8b", "spar-1gpu.yaml", "train_actor"): "one GPU: LoRA (r 16) at lr 5e-6, batch 16 (results/smollm2-135m/lora-merge)",
    ("llama3-8b", "spar-1gpu.yaml", "launcher"): "one GPU: training in this process",
    ("llama3-8b", "spar-1gpu.yaml", "executor"): "one GPU: one engine",
    ("llama3-8b", "self.yaml", "train_actor"): "SELF trains by SFT, with SPaR's seed-SFT settings (lr 2e-6, batch 64)",
    ("llama3-8b", "self_rewarding.yaml", "sample"): "Self-Rewarding's own candidates: 4 at T 0.7 (spec A8)",
    ("llama3-8b", "meta_rewarding.yaml", "sample"): "Meta-Rewarding's own candidates: 7 at T 0.8, top-p 0.95 (its paper)",
    ("smollm2-135m", "self.yaml", "train_actor"): "SELF trains by SFT: SPaR's seed-SFT lr 2e-6",
    ("smollm2-135m", "autoif.yaml", "prompts"): "AutoIF writes its own instructions: 8 seed prompts, the same held-out set",
    ("smollm2-135m", "autoif.yaml", "sample"): "AutoIF's own sampling of answers (T 0.8, top-p 0.95)",
    ("smollm2-135m", "autoif.yaml", "iterations"): "AutoIF is one round of data, as in its paper",
}


def _baselines():
    for folder, ref in REFERENCE.items():
        for path in sorted((RECIPES / folder).glob("*.yaml")):
            if path.name not in (ref, "demo.yaml"):
                yield folder, path.name


def differences(folder: str, name: str, path: Path | None = None) -> dict[str, tuple]:
    """Section -> (SPaR's value, the baseline's), over the validated configs (defaults filled in)."""
    ref = load_config(RECIPES / folder / REFERENCE[folder]).model_dump(mode="json")
    got = load_config(path or RECIPES / folder / name).model_dump(mode="json")
    return {k: (ref.get(k), got.get(k)) for k in sorted(set(ref) | set(got)) if k not in OWN and ref.get(k) != got.get(k)}


@pytest.mark.parametrize("folder,name", list(_baselines()))
def test_a_baseline_recipe_differs_from_spars_only_where_its_method_does(folder, name):
    unexplained = {k: v for k, v in differences(folder, name).items() if (folder, name, k) not in ALLOWED}
    assert not unexplained, f"{folder}/{name} differs from {REFERENCE[folder]} in {unexplained}"


def test_every_allowed_difference_is_still_a_difference():
    stale = [key for key in ALLOWED if key[2] not in differences(key[0], key[1])]
    assert not stale, f"allowed differences that no longer exist: {stale}"


def test_the_footing_check_notices_a_changed_training_section(tmp_path):
    text = (RECIPES / "llama3-8b" / "self_rewarding.yaml").read_text()
    assert "grad_accum: 4\n" in text
    copy = tmp_path / "self_rewarding.yaml"  # the shipped file stays as it is; a copy is changed
    copy.write_text(text.replace("grad_accum: 4\n", "grad_accum: 32\n"))
    assert differences("llama3-8b", "self_rewarding.yaml").keys() == {"sample"}
    assert differences("llama3-8b", "self_rewarding.yaml", copy).keys() == {"sample", "train_actor"}
