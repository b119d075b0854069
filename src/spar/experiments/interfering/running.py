"""The interfering-factors experiment's runs: items built from the base model, the learning-rate
pilot, DPO per (task, arm, seed) with sampled evaluations, appended and resumable."""

from __future__ import annotations

import json
import statistics
import zlib
from pathlib import Path
from typing import Any

from spar.experiments.interfering.tasks import (CHECK, KINDS, MAX_TOKENS, InterferingSettings, continuation_prompt,
                                                ending_candidates, ending_items, factor, letters_split, middle_of,
                                                pairs, sentences, story_framed, story_frames, story_items)

# -- generation and building -----------------------------------------------------------------------

def generate(model, tok, prompts: list[str], max_new_tokens: int, samples: int = 1, temperature: float | None = None,
             batch: int = 32) -> list[list[str]]:
    """``samples`` answers per user prompt (greedy when ``temperature`` is None), batched with left
    padding; the model's training mode is restored afterwards."""
    import torch

    was_training = model.training
    model.eval()
    tok.padding_side = "left"
    per = max(1, batch // samples)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0} if temperature else \
        {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    out: list[list[str]] = []
    with torch.no_grad():
        for start in range(0, len(prompts), per):
            chats = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                     for p in prompts[start:start + per]]
            enc = tok(chats, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, num_return_sequences=samples,
                                 pad_token_id=tok.pad_token_id, **sampling)
            texts = [tok.decode(g[enc["input_ids"].shape[1]:], skip_special_tokens=True).strip() for g in gen]
            out += [texts[i:i + samples] for i in range(0, len(texts), samples)]
    if was_training:
        model.train()
    return out


def greedy(model, tok, prompts: list[str], max_new_tokens: int, batch: int = 16) -> list[str]:
    return [rs[0] for rs in generate(model, tok, prompts, max_new_tokens, batch=batch)]


def _seed_of(text: str) -> int:
    return zlib.crc32(text.encode())


def evaluate(task: str, model, tok, held: list[dict], s: InterferingSettings, sampling_seed: str) -> dict[str, Any]:
    """``s.samples`` sampled answers per held-out item under a fixed torch seed (the global RNG is
    restored afterwards, so training's own randomness is untouched)."""
    import torch

    state = torch.get_rng_state()
    torch.manual_seed(_seed_of(sampling_seed))
    try:
        responses = generate(model, tok, [it["prompt"] for it in held], MAX_TOKENS[task], s.samples, s.temperature)
    finally:
        torch.set_rng_state(state)
    return score(task, held, responses)


def score(task: str, held: list[dict], responses: list[list[str]]) -> dict[str, Any]:
    passes = [sum(CHECK[task](it, r) for r in rs) for it, rs in zip(held, responses)]
    total = sum(len(rs) for rs in responses)
    out = {"accuracy": round(sum(passes) / total, 4), "factor": round(factor(task, held, responses), 4),
           "passes": passes, "responses": responses}
    if task == "story":
        flat = [(it, r) for it, rs in zip(held, responses) for r in rs]
        out["framed"] = round(sum(story_framed(it, r) for it, r in flat) / total, 4)
        out["sentences"] = round(statistics.fmean(sentences(r) for _, r in flat), 2)
    return out


def build(task: str, s: InterferingSettings, base_path: str) -> tuple[list[dict], list[dict]]:
    """(train items, held-out items) of a task; story middles and ending answers come from the base
    model, greedy."""
    if task == "letters":
        return letters_split(s.train, s.heldout)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_path)
    model = AutoModelForCausalLM.from_pretrained(base_path)
    if task == "story":
        n_train, n_held = s.train + s.train // 2 + 2, s.heldout + s.heldout // 2 + 2  # room for stories not written
        frames = story_frames(n_train + n_held, seed=0)
        pools = {"train": frames[:n_train], "heldout": frames[n_train:]}  # no frame in both
        out = []
        for split, count in (("train", s.train), ("heldout", s.heldout)):
            pool = pools[split]
            texts = greedy(model, tok, [continuation_prompt(f["first"]) for f in pool], 64)
            items = story_items(pool, [middle_of(t, f["first"], f["last"]) for t, f in zip(texts, pool)], seed=0)
            if len(items) < count:
                raise RuntimeError(f"the model wrote only {len(items)} usable stories for {count} story prompts")
            out.append(items[:count])
        return out[0], out[1]
    out = []
    for split, count in (("train", s.train), ("heldout", s.heldout)):
        # the rejected answer is the model's answer to the bare task (asked with the ending, the 135M
        # model mostly apologises instead of doing the task); each task is answered once
        cands, items, answers = ending_candidates(split, seed=0), [], {}
        for start in range(0, len(cands), 128):  # answer until enough are plain prose
            chunk = cands[start:start + 128]
            new = sorted({c["task"] for c in chunk} - set(answers))
            answers.update(zip(new, greedy(model, tok, new, 96)))
            items += ending_items(chunk, [answers[c["task"]] for c in chunk])
            if len(items) >= count:
                break
        if len(items) < count:
            raise RuntimeError(f"the model wrote only {len(items)} usable answers for {count} ending prompts")
        out.append(items[:count])
    return out[0], out[1]


# -- running -----------------------------------------------------------------------------------------

def _load_points(path: Path, key) -> tuple[list[dict], set]:
    """Points of runs that finished (and base points); a run cut short is dropped, to be redone."""
    from spar.io import write_jsonl

    if not path.exists():
        return [], set()
    done = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    finished = {key(p) for p in done if p.get("last")}
    kept = [p for p in done if key(p) in finished or p["kind"] == "base"]
    if len(kept) != len(done):
        write_jsonl(path, kept)
    return kept, finished


def _train(task: str, kind: str, seed: int, lr: float, steps: int, eval_every: int, items: list[dict],
           scored: list[dict], s: InterferingSettings, base: str, tok, out: Path, write, sampling: str) -> None:
    """One DPO run; ``write(point)`` after every evaluation on ``scored``."""
    from transformers import TrainerCallback

    from spar.settings import TrainSettings
    from spar.train import train_dpo

    class Eval(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step % eval_every == 0 or state.global_step == state.max_steps:
                ev = evaluate(task, model, tok, scored, s, f"{task}:{sampling}:{state.global_step}")
                write({"task": task, "kind": kind, "seed": seed, "lr": lr, "step": state.global_step, **ev,
                       "last": state.global_step == state.max_steps})

    ts = TrainSettings(learning_rate=lr, beta=s.beta, max_steps=steps, batch_size=s.batch_size, warmup_ratio=0.0,
                       max_length=256, sft_weight=s.sft_weight, dtype="fp32", lora=s.lora, lora_r=s.lora_r,
                       lora_alpha=2 * s.lora_r, precompute_ref=True)
    train_dpo(base, pairs(items, kind), out, ts, seed=seed, callbacks=[Eval()], save=False)


def choose_lr(pilot: list[dict], task: str) -> float | None:
    """The pilot's rate with the best mean accuracy of the two arms at its last step (the larger on a
    tie: where no rate reaches any accuracy in the pilot, the run that moves most has the best chance
    in the longer runs); None until both arms finished at some rate."""
    by: dict[float, dict[str, float]] = {}
    for p in pilot:
        if p["task"] == task and p.get("last"):
            by.setdefault(p["lr"], {})[p["kind"]] = p["accuracy"]
    means = {lr: statistics.fmean(v.values()) for lr, v in by.items() if set(v) == set(KINDS)}
    if not means:
        return None
    return max(means, key=lambda lr: (means[lr], lr))


def run(out_dir: Path, s: InterferingSettings, model: str = "embedded", show: bool = True) -> list[dict]:
    """The pilot (unless ``s.learning_rate``), then every (task, seed, pair type) run, appended to
    ``pilot.jsonl`` and ``points.jsonl``; returns all points. Both resume."""
    from transformers import AutoTokenizer

    from spar.io import Appender
    from spar.stages import model_path

    base = model_path(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings_path = out_dir / "settings.json"
    settings = {**s.model_dump(), "model": model}
    if settings_path.exists():
        before = json.loads(settings_path.read_text())
        fixed = lambda d: {k: v for k, v in d.items() if k not in ("chosen_lr", "tasks", "seeds")}  # noqa: E731
        if fixed(before) != fixed(settings):
            from spar.io import DataError

            raise DataError(f"{settings_path}: this folder holds a run with other settings; use another --out")
        settings["chosen_lr"] = before.get("chosen_lr", {})
    settings.setdefault("chosen_lr", {})
    settings_path.write_text(json.dumps(settings, indent=1) + "\n")
    points_path, pilot_path = out_dir / "points.jsonl", out_dir / "pilot.jsonl"
    done, finished = _load_points(points_path, lambda p: (p["task"], p["kind"], p["seed"]))
    pilot, pilot_finished = _load_points(pilot_path, lambda p: (p["task"], p["kind"], p["lr"]))
    tok = AutoTokenizer.from_pretrained(base)

    def writer(path: Path, into: list[dict]):
        def write(point: dict) -> None:
            with Appender(path) as f:
                f.write(point)
            into.append(point)
        return write

    for task in s.tasks:
        data_path = out_dir / f"{task}.items.json"
        if data_path.exists():
            train_items, held = (json.loads(data_path.read_text())[k] for k in ("train", "heldout"))
        else:
            if show:
                print(f"{task}: building {s.train} training pairs and {s.heldout} held-out prompts", flush=True)
            train_items, held = build(task, s, base)
            data_path.write_text(json.dumps({"train": train_items, "heldout": held}, indent=1) + "\n")
        if not any(p["task"] == task and p["kind"] == "base" for p in done):
            from transformers import AutoModelForCausalLM

            ev = evaluate(task, AutoModelForCausalLM.from_pretrained(base), tok, held, s, f"{task}:base")
            writer(points_path, done)({"task": task, "kind": "base", "seed": None, "lr": None, "step": 0, **ev})
        lr = s.learning_rate
        if lr is None:
            probe = train_items[:s.heldout]  # the pilot scores training prompts: the held-out ones stay unseen
            for rate in s.pilot_rates:
                for kind in KINDS:
                    if (task, kind, rate) in pilot_finished:
                        continue
                    if show:
                        print(f"{task} · pilot · {kind} pairs · lr {rate:g}", flush=True)
                    _train(task, kind, s.pilot_seed, rate, s.pilot_steps, s.pilot_steps, train_items, probe, s, base,
                           tok, out_dir / "train" / f"pilot-{task}-{kind}-{rate:g}", writer(pilot_path, pilot),
                           f"pilot:{s.pilot_seed}")
            lr = choose_lr(pilot, task)
            settings["chosen_lr"][task] = lr
            settings_path.write_text(json.dumps(settings, indent=1) + "\n")
        for seed in s.seeds:
            for kind in KINDS:
                if (task, kind, seed) in finished:
                    continue
                if show:
                    print(f"{task} · {kind} pairs · seed {seed} · lr {lr:g}", flush=True)
                _train(task, kind, seed, lr, s.steps, s.eval_every, train_items, held, s, base, tok,
                       out_dir / "train" / f"{task}-{kind}-{seed}", writer(points_path, done), str(seed))
    return done
