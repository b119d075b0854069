"""Copy a trained LoRA adapter into the package as a shipped one (src/spar/adapters/<name>/):
the adapter config and weights only (the tokenizer is the base's), the weights stored as fp16 (the
adapter's A and B factors are small numbers of ordinary range; fp16 keeps ~3 decimal digits of each,
and spar merges them into fp32 weights on load), and RECIPE.json with how it was made and what it
measured. Run by hand after experiments/refiner_bootstrap.sh:

    python experiments/ship_adapter.py runs/refiner-bootstrap/refiner/model \
        results/smollm2-135m/refiner-bootstrap/heldout-repairs.json embedded-refiner
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def main(adapter: str, report: str, name: str) -> None:
    src, dst = Path(adapter), Path(__file__).resolve().parents[1] / "src" / "spar" / "adapters" / name
    config = json.loads((src / "adapter_config.json").read_text())
    if config.get("base_model_name_or_path") != "embedded":
        sys.exit(f"{src}: its base is {config.get('base_model_name_or_path')!r}, not the packaged 'embedded'")
    dst.mkdir(parents=True, exist_ok=True)
    weights = {k: v.to(torch.float16) for k, v in load_file(src / "adapter_model.safetensors").items()}
    save_file(weights, dst / "adapter_model.safetensors", metadata={"format": "pt"})
    shutil.copyfile(src / "adapter_config.json", dst / "adapter_config.json")
    groups = json.loads(Path(report).read_text())["groups"]
    n = sum(groups[g]["n"] for g in ("heldout-kind", "heldout-prompt"))
    repaired = sum(groups[g]["repaired"] for g in ("heldout-kind", "heldout-prompt"))
    recipe = {"name": name, "base": "embedded", "built_by": "experiments/refiner_bootstrap.sh",
              "report": report, "repaired": repaired, "heldout_breaks": n, "repaired_share": round(repaired / n, 4),
              "groups": {g: {k: groups[g][k] for k in ("n", "repaired", "checker_pass", "mean_similarity", "machinery")}
                         for g in ("heldout-kind", "heldout-prompt")},
              "parameters": sum(v.numel() for v in weights.values()),
              "bytes": (dst / "adapter_model.safetensors").stat().st_size,
              "licence": "Apache-2.0 (the base model, SmolLM2-135M-Instruct, is Apache-2.0; the training data is "
                         "spar's procedural prompts and the base model's own answers)"}
    (dst / "RECIPE.json").write_text(json.dumps(recipe, indent=1) + "\n")
    print(json.dumps(recipe))


if __name__ == "__main__":
    main(*sys.argv[1:4])
