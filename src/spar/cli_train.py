"""``spar train``: SFT and DPO with TRL on rows from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from spar.cli_common import ModelOpt, _overrides, _shipped, friendly, IN, OUT_DIR

train_app = typer.Typer(help="Train a model with TRL: sft (completion-only) or dpo (+ SFT term on chosen).", no_args_is_help=True)


def _train(kind: str, model: str, data: Path, out: Path, lora: bool, config: Optional[Path], settings: Optional[list[str]],
           seed: int):
    from spar.io import refuse_same_path
    from spar.settings import TrainSettings, sft_defaults
    from spar.stages import run_train

    refuse_same_path(data, out)
    if config:
        from spar.config import load_config

        cfg = load_config(config)
        base = cfg.train_actor if kind == "dpo" else cfg.train_refiner
    else:
        base = TrainSettings() if kind == "dpo" else sft_defaults()
    s = base.but(**_overrides(settings), **({"lora": True} if lora else {}))
    path, losses = run_train(kind, model, data, out, s, seed)
    if path is None:
        from spar.io import DataError

        raise DataError(f"{data}: no training rows")
    typer.echo(f"saved {path}; loss per step: {losses}", err=True)


@train_app.command("sft")
@friendly
def train_sft_cmd(
    data: Annotated[Path, typer.Option(help="JSONL of {messages} or {prompt, completion} rows (e.g. rft.jsonl)"), IN],
    out: Annotated[Path, typer.Option(help="output folder; the model goes to OUT/model"), OUT_DIR],
    model: ModelOpt = "embedded",
    lora: Annotated[bool, typer.Option("--lora", help="train a LoRA adapter instead of all weights")] = False,
    config: Annotated[Optional[Path], typer.Option(help="recipe YAML (or a shipped recipe by name): its train_refiner section gives the defaults", callback=_shipped), IN] = None,
    set: Annotated[Optional[list[str]], typer.Option("--set", help="a training setting, KEY=VALUE (repeatable), e.g. learning_rate=1e-5")] = None,
    seed: Annotated[int, typer.Option(help="training seed (data order, initialisation of LoRA weights)")] = 0,
):
    """Supervised fine-tuning on the completion only (initial actor/refiner, refiner RFT). lr 1e-6 by default."""
    _train("sft", model, data, out, lora, config, set, seed)


@train_app.command("dpo")
@friendly
def train_dpo_cmd(
    data: Annotated[Path, typer.Option(help="JSONL of {prompt, chosen, rejected} rows (e.g. dpo.jsonl)"), IN],
    out: Annotated[Path, typer.Option(help="output folder; the model goes to OUT/model"), OUT_DIR],
    model: ModelOpt = "embedded",
    lora: Annotated[bool, typer.Option("--lora", help="train a LoRA adapter instead of all weights")] = False,
    config: Annotated[Optional[Path], typer.Option(help="recipe YAML (or a shipped recipe by name): its train_actor section gives the defaults", callback=_shipped), IN] = None,
    set: Annotated[Optional[list[str]], typer.Option("--set", help="a training setting, KEY=VALUE (repeatable), e.g. beta=0.1")] = None,
    seed: Annotated[int, typer.Option(help="training seed (data order, initialisation of LoRA weights)")] = 0,
):
    """DPO with the paper's defaults: beta 0.1, SFT term on chosen with weight 0.1, lr 2e-7, 1 epoch, warmup 0.1."""
    _train("dpo", model, data, out, lora, config, set, seed)
