"""Thin builders over TRL, transformers and PEFT: SFT (initial actor/refiner, refiner RFT) and DPO
(the actor, with the paper's 0.1-weighted SFT term on the chosen answer). No hand-written loops.

Data formats (TRL's conversational ones, so the files the self-play stages write train as they are):
- SFT: ``{"messages": [...]}`` (the last turn is the target) or ``{"prompt": [...], "completion": [...]}``;
  the loss is on the completion only.
- DPO: ``{"prompt": [...], "chosen": [...], "rejected": [...]}`` (spar's ``PreferencePair`` rows).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any


from spar.settings import TrainSettings, sft_defaults  # noqa: F401  (sft_defaults: re-exported)


def _precision(s: TrainSettings) -> dict[str, bool]:
    import torch

    if s.dtype == "bf16" or (s.dtype is None and torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
        # On a CPU: fp32 weights and optimizer, matmuls under bf16 autocast (transformers needs use_cpu
        # for that); pure bf16 weights would round away updates of lr ~1e-6 altogether.
        return {"bf16": True, "fp16": False, **({} if torch.cuda.is_available() else {"use_cpu": True})}
    if s.dtype == "fp16":
        return {"bf16": False, "fp16": True}
    return {"bf16": False, "fp16": False}


def _quiet() -> None:
    """spar shows one progress bar per training run; the libraries' own bars and notices are noise."""
    import warnings

    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


@contextmanager
def _no_tqdm() -> Iterator[None]:
    """TRL's tqdm bars honour TQDM_DISABLE when they are made; spar draws its own."""
    before = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = before


def _progress_callback(label: str):
    from transformers import TrainerCallback

    from spar.progress import bar

    class RichProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.bar = bar()
            self.bar.start()
            self.task = self.bar.add_task(label, total=state.max_steps, loss="")

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.bar.update(self.task, description=f"{label} loss {logs['loss']:.4f}")

        def on_step_end(self, args, state, control, **kw):
            self.bar.update(self.task, completed=state.global_step)

        def on_train_end(self, args, state, control, **kw):
            self.bar.stop()

    return RichProgress()


def _common_args(s: TrainSettings, out: Path, seed: int, n_rows: int) -> dict[str, Any]:
    steps = s.max_steps if s.max_steps > 0 else math.ceil(math.ceil(n_rows / s.batch_size) / s.grad_accum * s.epochs)
    save = {"save_strategy": "steps", "save_steps": max(1, math.ceil(steps / s.checkpoints)), "save_total_limit": 1,
            "save_only_model": False} if s.checkpoints and steps >= 2 * s.checkpoints else {"save_strategy": "no"}
    return dict(
        output_dir=str(out / "trainer"), learning_rate=s.learning_rate, num_train_epochs=s.epochs, max_steps=s.max_steps,
        per_device_train_batch_size=s.batch_size, gradient_accumulation_steps=s.grad_accum,
        warmup_steps=s.warmup_ratio, lr_scheduler_type="linear", logging_steps=s.logging_steps,
        report_to=s.report_to or "none", seed=seed, max_length=s.max_length,
        gradient_checkpointing=s.gradient_checkpointing, disable_tqdm=True, **save, **_precision(s),
    )


def _resume_point(out: Path, model: str, rows: list[dict], s: TrainSettings, seed: int) -> str | None:
    """The last checkpoint of a killed run of this very training (same base, rows, settings and
    seed), or None; checkpoints of any other training are cleared first."""
    key = hashlib.sha256(json.dumps([model, rows, s.model_dump(), seed], sort_keys=True, default=str).encode()).hexdigest()
    trainer_dir, stamp = out / "trainer", out / "trainer" / "spar-training-key"
    if not (stamp.exists() and stamp.read_text() == key):
        shutil.rmtree(trainer_dir, ignore_errors=True)
        trainer_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(key)
        return None
    done = sorted(trainer_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    done = [p for p in done if (p / "trainer_state.json").exists()]  # a checkpoint cut off while saving is not one
    return str(done[-1]) if done else None


def _load(model: str, s: TrainSettings):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from spar.llm import adapters

    model = adapters.resolve(model)
    tok = AutoTokenizer.from_pretrained(adapters.tokenizer_folder(model) if adapters.is_adapter(model) else model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    prec = _precision(s)
    dtype = torch.float32 if prec.get("use_cpu") else (
        torch.bfloat16 if prec["bf16"] else (torch.float16 if prec["fp16"] else torch.float32))
    if adapters.is_adapter(model):  # a LoRA folder trains on as the merged model
        m = adapters.load_merged(model, dtype)
    else:
        m = AutoModelForCausalLM.from_pretrained(model, dtype=dtype)
    return m, tok


def _peft(s: TrainSettings):
    if not s.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules="all-linear")


def _is_main(trainer) -> bool:
    """Whether this is the process that writes files (the only one, or rank 0 under accelerate launch);
    the others wait for it."""
    acc = getattr(trainer, "accelerator", None)
    if acc is None or acc.num_processes == 1:
        return True
    acc.wait_for_everyone()
    return acc.is_main_process


def _save(trainer, tok, out: Path, s: TrainSettings, start: str) -> Path:
    """Save the model (or adapter) and tokenizer to ``out/model`` atomically (rank 0 only). An
    adapter trained from model string ``start`` records it as its base when ``start`` is an adapter
    itself (the new adapter holds only its own update: spar.llm.adapters stacks them)."""
    final = out / "model"
    if not _is_main(trainer):
        return final
    tmp = out / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model = trainer.model
    if s.lora and s.merge_lora:
        _record_merge(model, out)
        model = model.merge_and_unload()
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if s.lora and not s.merge_lora:
        from spar.llm.adapters import portable_base, record_base, stacked_base

        portable_base(tmp)
        if (under := stacked_base(start)) is not None:
            record_base(tmp, under)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    shutil.rmtree(out / "trainer", ignore_errors=True)
    return final


def lora_updates(model):
    """Each LoRA layer of ``model`` with its active adapters' update of the layer's weight, in fp32."""
    from peft.tuners.lora import LoraLayer

    for m in model.modules():
        if not isinstance(m, LoraLayer) or not hasattr(m.base_layer, "weight"):
            continue
        for name in m.active_adapters:
            if name in m.lora_A:
                d = (m.lora_B[name].weight.float() @ m.lora_A[name].weight.float()) * m.scaling[name]
                yield m, (d.T if getattr(m, "fan_in_fan_out", False) else d)


def merge_rounding(model, dtype=None) -> dict | None:
    """What merging a LoRA model's adapters into its weights keeps of their update when the merged
    weights are bf16 or fp16 (``dtype``, by default the weights' own): a merged weight is rounded to
    that precision, and an update smaller than half a step of the weight it lands on is lost
    entirely. Returns the relative error of the merged weights' change against the exact update and
    the share of updated entries whose change rounds to zero; None for fp32 (the merge is exact)."""
    import torch

    err = total = 0.0
    lost = count = 0
    for m, d in lora_updates(model):
        target = dtype or m.base_layer.weight.dtype
        if target == torch.float32:
            return None
        w = m.base_layer.weight.detach().float()
        got = (w + d).to(target).float() - w
        err += (got - d).pow(2).sum().item()
        total += d.pow(2).sum().item()
        lost += ((got == 0) & (d != 0)).sum().item()
        count += int((d != 0).sum().item())
    if total == 0:
        return None
    return {"dtype": str(target).removeprefix("torch."), "relative_error": round((err / total) ** 0.5, 4),
            "share_rounded_away": round(lost / max(count, 1), 4)}


def _record_merge(model, out: Path) -> None:
    """Keep merge_rounding's figures beside the model (merge.json), and say so when nearly every
    updated entry rounded away."""
    info = merge_rounding(model)
    if info is None:
        return
    (out / "merge.json").write_text(json.dumps(info, indent=1))
    if info["share_rounded_away"] > 0.95:
        from spar.progress import console

        console.print(f"[yellow]note: merging the LoRA adapter into {info['dtype']} weights rounded away "
                      f"{info['share_rounded_away']:.0%} of the updated entries (relative error "
                      f"{info['relative_error']:.2f}): the update is below {info['dtype']}'s resolution for most "
                      f"weights ({out / 'merge.json'}; results/smollm2-135m/lora-merge measures what that costs)[/yellow]")


def _check_kept(trainer, given: int, s: TrainSettings) -> None:
    """Stop with the reason when the trainer's preprocessing left no row (TRL drops a row whose
    completion is cut away entirely by max_length)."""
    if len(trainer.train_dataset) == 0:
        raise ValueError(f"none of the {given} training rows is left at max_length={s.max_length}: their prompts "
                         "alone reach it; raise max_length")


def _fit(trainer, resume: str | None = None) -> None:
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the loss is on spar's bar and in train_log.json
    if resume:
        from spar.progress import console

        console.print(f"[dim]resuming the training from {resume}[/dim]")
    trainer.train(resume_from_checkpoint=resume)


def _log_history(trainer, out: Path, settings: TrainSettings, seed: int) -> list[dict]:
    hist = trainer.state.log_history
    if _is_main(trainer):
        (out / "train_log.json").write_text(json.dumps({"settings": settings.model_dump(), "seed": seed, "log": hist}, indent=1))
    return hist


def to_prompt_completion(row: dict) -> dict:
    if "messages" in row:
        msgs = row["messages"]
        if not msgs or msgs[-1]["role"] != "assistant":
            raise ValueError("an SFT row's last message must be the assistant's (the target)")
        return {"prompt": msgs[:-1], "completion": msgs[-1:]}
    if "prompt" in row and "completion" in row:
        return {"prompt": row["prompt"], "completion": row["completion"]}
    raise ValueError("an SFT row needs 'messages' or 'prompt' + 'completion'")


def train_sft(model: str, rows: list[dict], out: str | Path, settings: TrainSettings | None = None,
              seed: int = 0, callbacks: list | None = None) -> tuple[Path, list[dict]]:
    """Supervised fine-tuning on the completion only; returns the saved model folder and the log."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    s = settings or sft_defaults()
    out = Path(out)
    if not rows:
        raise ValueError("no SFT rows to train on")
    _quiet()
    data = Dataset.from_list([to_prompt_completion(r) for r in rows])
    resume = _resume_point(out, model, rows, s, seed)
    m, tok = _load(model, s)
    args = SFTConfig(**_common_args(s, out, seed, len(rows)), completion_only_loss=True)
    trainer = SFTTrainer(model=m, args=args, train_dataset=data, processing_class=tok, peft_config=_peft(s),
                         callbacks=[_progress_callback("sft"), *(callbacks or [])])
    _check_kept(trainer, len(rows), s)
    _fit(trainer, resume)
    return _save(trainer, tok, out, s, model), _log_history(trainer, out, s, seed)


def train_dpo(model: str, rows: list[dict], out: str | Path, settings: TrainSettings | None = None,
              seed: int = 0, callbacks: list | None = None, save: bool = True,
              loaded: tuple[Any, Any] | None = None) -> tuple[Path | None, list[dict]]:
    """DPO with the SFT term on chosen (``loss_type=["sigmoid", "sft"]``, weights ``[1, sft_weight]``).
    ``callbacks``: more transformers TrainerCallbacks (e.g. evaluations during training); with
    ``save=False`` the trained model is not written (only ``train_log.json``); ``loaded``: an
    in-memory (model, tokenizer) to train instead of loading ``model`` (which then only names it)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    s = settings or TrainSettings()
    if not save:  # nothing to resume into
        s = s.but(checkpoints=0)
    out = Path(out)
    if not rows:
        raise ValueError("no preference pairs to train on")
    from spar.progress import console as progress_console

    _quiet()
    data = Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])
    resume = _resume_point(out, model, rows, s, seed) if save else None
    m, tok = loaded if loaded is not None else _load(model, s)
    loss = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, s.sft_weight]} if s.sft_weight > 0 else {"loss_type": ["sigmoid"]}
    args = DPOConfig(**_common_args(s, out, seed, len(rows)), beta=s.beta, precompute_ref_log_probs=s.precompute_ref, **loss)
    # With precompute_ref, DPOTrainer runs the reference over every pair while it is built; its own
    # tqdm bar for that pass would cut into spar's output, so spar shows a status line instead.
    with _no_tqdm(), (progress_console.status(f"dpo: reference log-probs of {len(rows)} pairs, computed once")
                      if s.precompute_ref else nullcontext()):
        trainer = DPOTrainer(model=m, args=args, train_dataset=data, processing_class=tok, peft_config=_peft(s),
                             callbacks=[_progress_callback("dpo"), *(callbacks or [])])
    _fit(trainer, resume)
    out.mkdir(parents=True, exist_ok=True)
    path = _save(trainer, tok, out, s, model) if save else None
    shutil.rmtree(out / "trainer", ignore_errors=True)
    return path, _log_history(trainer, out, s, seed)


def train_grpo(model: str, rows: list[dict], out: str | Path, reward, settings: TrainSettings, rl,
               seed: int = 0, stop=None) -> tuple[Path, list[dict]]:
    """GRPO (TRL's GRPOTrainer) of ``model`` on conversational prompts ``rows`` (``{"prompt": [...],
    ...}``; every other column is handed to ``reward``), ``rl`` a ``spar.settings.RLVRSettings``.
    ``reward(prompts, completions, **columns) -> list[float]`` as TRL calls it. Batch: the groups
    of ``rl.num_generations`` completions of ``rl.prompts_per_step`` prompts per forward, times
    ``settings.grad_accum`` per optimiser step. ``stop()`` (a budget) is asked after every optimiser
    step; once it says so, training ends there and the model is saved."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if stop is not None and stop():
                control.should_training_stop = True

    s = settings
    out = Path(out)
    if not rows:
        raise ValueError("no prompts to train on")
    _quiet()
    data = Dataset.from_list(rows)
    s = s.but(batch_size=rl.prompts_per_step * rl.num_generations)  # completions per forward
    resume = _resume_point(out, model, rows, s, seed)
    m, tok = _load(model, s)
    common = _common_args(s, out, seed, len(rows) * rl.num_generations)
    common.pop("max_length")
    args = GRPOConfig(**common, num_generations=rl.num_generations, max_completion_length=rl.max_completion_length,
                      temperature=rl.temperature, top_p=rl.top_p, beta=rl.beta, mask_truncated_completions=True,
                      log_completions=False)
    trainer = GRPOTrainer(model=m, reward_funcs=reward, args=args, train_dataset=data, processing_class=tok,
                          peft_config=_peft(s), callbacks=[_progress_callback("grpo"), Stop()])
    _fit(trainer, resume)
    return _save(trainer, tok, out, s, model), _log_history(trainer, out, s, seed)
