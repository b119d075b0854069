"""The interfering-factors experiment (SPaR's Figure 4 test): DPO on *refined* pairs, whose chosen
answer differs from the rejected one only where the instruction was broken, against DPO on
*interfering* pairs, whose chosen answer is also right but differs in something else, from the
same start with the same steps, learning rate, beta and seeds.

- **letters**: "write the letter x exactly n times" (n from 2 to 8). Rejected: lowercase, a wrong
  count. Refined chosen: the right count, lowercase. Interfering chosen: the right count in
  UPPERCASE. Accuracy: the right letter the right number of times (case does not count);
  interfering factor: the share of uppercase letters in the answers. Held-out prompts are
  (letter, count) combinations no training pair has.
- **story**: a short story of three to five sentences with a given first and last sentence. The
  story between them is the base model's own (greedy) two sentences. Rejected: the story without one
  of the two given sentences. Refined chosen: the same story with it put back. Interfering chosen:
  the two given sentences around *another* prompt's story. Both chosen answers are correct
  four-sentence stories. Accuracy: both sentences in place and three to five sentences in all;
  interfering factor: how much of the rejected story the answer keeps (rapidfuzz partial ratio).
- **ending**: one of the project's seed tasks with "the very last words must be <phrase>". Rejected:
  the first three sentences of the base model's own answer to the task, without the phrase. Refined chosen: the same three
  sentences and the phrase. Interfering chosen: only the first of them and the phrase (as correct,
  and much shorter). Accuracy: IFEval's end-phrase check; interfering factor: the share of short
  answers (at most two sentences, the phrase counted).

Each task's learning rate comes from a small pilot (both pair types, ``pilot_steps`` steps at each
of ``pilot_rates``, seed ``pilot_seed``, scored on training prompts, never the held-out ones): the
rate with the best mean accuracy of the two arms, the larger on a tie. Every evaluation samples
``samples`` answers per held-out prompt at step 0 (the base model) and every ``eval_every`` steps,
with the same sampling seed for both arms at a (seed, step). Results are appended per (task, pair
type, seed), so a rerun resumes. The primary endpoint is stated in the settings before the run
(:data:`PRIMARY`) and tested by :func:`arm_test`.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import string
import zlib
from pathlib import Path
from typing import Any

from pydantic import Field

from spar.settings import Settings

TASKS = ("letters", "story", "ending")
KINDS = ("refined", "interfering")
PRIMARY = ("accuracy at the last step: the share of sampled answers to a held-out prompt that pass the task's "
           "check, refined pairs minus interfering pairs, per (seed, held-out prompt) cell; two-sided paired "
           "sign-flip permutation test over the cells, a 95% percentile bootstrap interval over the cells. "
           "Secondary: the same on the area under the accuracy curve (trapezoid over the evaluated steps, the "
           "base model at step 0), and the exact sign-flip test over seed means.")


class InterferingSettings(Settings):
    tasks: list[str] = Field(default_factory=lambda: list(TASKS))
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    train: int = Field(256, ge=2)  # training pairs per task
    heldout: int = Field(16, ge=1)  # held-out prompts per task
    samples: int = Field(4, ge=1)  # sampled answers per held-out prompt at each evaluation
    temperature: float = Field(0.7, gt=0)
    steps: int = Field(200, ge=1)  # DPO steps per run
    eval_every: int = Field(50, ge=1)
    learning_rate: float | None = Field(None, gt=0)  # None: each task's pilot picks one of pilot_rates
    pilot_rates: list[float] = Field(default_factory=lambda: [3e-5, 1e-4, 3e-4])
    pilot_steps: int = Field(30, ge=1)
    pilot_seed: int = 100
    beta: float = Field(0.1, gt=0)
    sft_weight: float = Field(0.1, ge=0)  # SPaR's actor objective: DPO + 0.1 x NLL on chosen, in both arms
    batch_size: int = Field(2, ge=1)
    lora: bool = True  # LoRA r16 on every linear layer (the one-GPU recipe's shape); False: full fine-tuning
    lora_r: int = Field(16, ge=1)
    permutations: int = Field(20000, ge=100)
    primary_endpoint: str = PRIMARY


# -- letters ---------------------------------------------------------------------------------------

LETTERS = [c for c in string.ascii_lowercase if c not in "ilo"]  # no letters that read as digits
COUNTS = range(2, 9)


def letter_prompt(x: str, n: int) -> str:
    return f"Write the letter {x} exactly {n} times, separated by spaces, and nothing else."


def letter_item(x: str, n: int, wrong: int, ident: str) -> dict:
    return {"id": ident, "prompt": letter_prompt(x, n), "letter": x, "n": n, "rejected": " ".join([x] * wrong),
            "refined": " ".join([x] * n), "interfering": " ".join([x.upper()] * n)}


def letters_items(count: int, seed: int) -> list[dict]:
    """``count`` items over every (letter, count), for tests and small runs."""
    rng = random.Random(f"letters:{seed}")
    out = []
    for i in range(count):
        x, n = rng.choice(LETTERS), rng.choice(list(COUNTS))
        out.append(letter_item(x, n, _wrong(rng, n), f"letters-{seed}-{i}"))
    return out


def _wrong(rng: random.Random, n: int) -> int:
    return n + rng.choice([d for d in (-2, -1, 1, 2) if n + d >= 1])


def letters_split(train: int, heldout: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Held-out prompts are (letter, count) combinations that no training item has; the training
    items cycle over the others, each time with another wrong count where one is left."""
    rng = random.Random(f"letters-split:{seed}")
    combos = [(x, n) for x in LETTERS for n in COUNTS]
    rng.shuffle(combos)
    if heldout >= len(combos):
        raise ValueError(f"at most {len(combos) - 1} held-out letter prompts, asked for {heldout}")
    held = [letter_item(x, n, _wrong(rng, n), f"letters-h-{i}") for i, (x, n) in enumerate(combos[:heldout])]
    rest, out, used = combos[heldout:], [], set()
    for i in range(train):
        x, n = rest[i % len(rest)]
        options = [n + d for d in (-2, -1, 1, 2) if n + d >= 1 and (x, n, n + d) not in used] or [_wrong(rng, n)]
        wrong = rng.choice(options)
        used.add((x, n, wrong))
        out.append(letter_item(x, n, wrong, f"letters-t-{i}"))
    return out, held


def letters_ok(item: dict, response: str) -> bool:
    got = [c for c in response if c.isalpha()]
    return len(got) == item["n"] and all(c.lower() == item["letter"] for c in got)


def uppercase_share(responses: list[str]) -> float:
    letters = [c for r in responses for c in r if c.isalpha()]
    return sum(c.isupper() for c in letters) / len(letters) if letters else 0.0


# -- story -----------------------------------------------------------------------------------------

WHO = ["The old baker", "A young sailor", "The village teacher", "A tired nurse", "The lighthouse keeper", "A small fox",
       "The new mayor", "An honest thief", "The river guide", "A curious robot", "The night porter", "A retired pilot"]
DID = ["found a letter under the door", "missed the last train home", "heard music from the empty house",
       "planted a tree in the square", "lost a key on the beach", "opened a shop by the station",
       "saw a light over the hills", "painted the bridge blue", "met a stranger at the market", "counted the stars twice"]
END = ["Nobody in town ever forgot that day.", "From then on, every morning felt lighter.", "The door has stayed open ever since.",
       "And that is why the bells still ring at noon.", "Some things are better left unexplained.",
       "It was the best mistake anyone had made in years."]


def story_prompt(first: str, last: str) -> str:
    return (f'Write a short story of three to five sentences. Its first sentence must be "{first}" and its last '
            f'sentence must be "{last}"')


def story_frames(count: int, seed: int) -> list[dict]:
    """``count`` distinct (first, last) frames in a seeded order; two calls with one seed share them."""
    rng = random.Random(f"story:{seed}")
    frames = [(f"{w} {d}.", e) for w in WHO for d in DID for e in END]
    rng.shuffle(frames)
    if count > len(frames):
        raise ValueError(f"at most {len(frames)} story frames, asked for {count}")
    return [{"id": f"story-{seed}-{i}", "first": a, "last": b, "prompt": story_prompt(a, b)}
            for i, (a, b) in enumerate(frames[:count])]


def continuation_prompt(first: str) -> str:
    # (asked to continue the sentence, the 135M model repeats it; asked for a story about it, it writes one)
    return f"Write a very short story (two or three sentences) about this: {first}"


def middle_of(text: str, first: str, last: str) -> str | None:
    """The base model's story, cleaned: one paragraph without the frame sentences, its first two
    complete sentences; None when it wrote none."""
    text = " ".join(text.replace(first, " ").replace(last, " ").split())
    found = [x.strip() for x in re.findall(r"[^.!?]+[.!?]", text)]
    return " ".join(found[:2]) or None


def story_items(frames: list[dict], middles: list[str | None], seed: int) -> list[dict]:
    """Rejected: one frame sentence missing; refined: the same story with it back; interfering: the
    frame around the next prompt's story."""
    rng = random.Random(f"story-items:{seed}")
    kept = [(f, m) for f, m in zip(frames, middles) if m]
    out = []
    for i, (f, mid) in enumerate(kept):
        other = next(m for _, m in kept[i + 1:] + kept[:i] if m != mid)
        full = f"{f['first']} {mid} {f['last']}"
        rejected = f"{mid} {f['last']}" if rng.random() < 0.5 else f"{f['first']} {mid}"
        out.append({**f, "middle": mid, "rejected": rejected, "refined": full,
                    "interfering": f"{f['first']} {other} {f['last']}"})
    return out


def story_framed(item: dict, response: str) -> bool:
    """The first and last sentences in place, however long the answer (reported beside accuracy)."""
    text = response.strip().strip('"').strip()
    return text.startswith(item["first"]) and text.rstrip('"').rstrip().endswith(item["last"])


def sentences(text: str) -> int:
    return len(re.findall(r"[^.!?]*[A-Za-z][^.!?]*[.!?]+", text))


def story_ok(item: dict, response: str) -> bool:
    """The given first and last sentences, and three to five sentences in all (as the prompt asks:
    the two sentences alone are not a story)."""
    return story_framed(item, response) and 3 <= sentences(response.strip().strip('"')) <= 5


def story_overlap(items: list[dict], responses: list[str]) -> float:
    from rapidfuzz import fuzz

    vals = [fuzz.partial_ratio(it["middle"], r) / 100 for it, r in zip(items, responses)]
    return statistics.fmean(vals) if vals else 0.0


# -- ending ----------------------------------------------------------------------------------------

END_KIND = "startend:end_checker"


def ending_prompt(task: str, phrase: str) -> str:
    from spar.constraints.procedural import SPECS

    return f"{task} {SPECS[END_KIND].render({'end_phrase': phrase})}"


def ending_candidates(split: str, seed: int) -> list[dict]:
    """Every (seed task of ``split``, end phrase) prompt, in a seeded order that takes each task once
    before any takes a second phrase."""
    from spar.constraints.procedural import ENDINGS
    from spar.constraints.seeds import seed_tasks, split_of

    rng = random.Random(f"ending:{split}:{seed}")
    tasks = [t for _, t in seed_tasks() if split_of(t) == split]
    rng.shuffle(tasks)
    out = []
    for round_ in range(len(ENDINGS)):
        for t in tasks:
            phrase = ENDINGS[(zlib.crc32(t.encode()) + round_) % len(ENDINGS)]
            out.append({"id": f"ending-{split}-{len(out)}", "task": t, "phrase": phrase, "prompt": ending_prompt(t, phrase)})
    return out


def opening_sentences(text: str, count: int = 3) -> list[str] | None:
    """The first ``count`` sentences of an answer when they are plain prose (each of four words or
    more, no list marker, heading or markup, none repeated); None otherwise."""
    head = text.strip()
    if not head or re.match(r"^\s*(#|\*|-|\d+[.)]|<<)", head):
        return None
    flat = " ".join(head.split("\n\n")[0].split())
    found = [x.strip() for x in re.findall(r"[^.!?]+[.!?]", flat)]
    if (len(found) < count or len(set(found[:count])) < count
            or any(len(x.split()) < 4 or re.search(r"[*#:`]|\d\.", x) for x in found[:count])):
        return None
    return found[:count]


def ending_items(candidates: list[dict], answers: list[str]) -> list[dict]:
    """Rejected: the base answer's first three sentences; refined: the same and the phrase;
    interfering: the first sentence and the phrase. Answers that are not plain prose, or that
    already end with the phrase, are left out."""
    out = []
    for c, text in zip(candidates, answers):
        opening = opening_sentences(text)
        if opening is None or ending_ok(c, " ".join(opening)):
            continue
        rejected = " ".join(opening)
        out.append({**c, "rejected": rejected, "refined": f"{rejected} {c['phrase']}",
                    "interfering": f"{opening[0]} {c['phrase']}"})
    return out


def ending_ok(item: dict, response: str) -> bool:
    from spar.constraints.checkers import follows

    return follows(END_KIND, {"end_phrase": item["phrase"]}, response)


def short_share(responses: list[str]) -> float:
    return sum(sentences(r) <= 2 for r in responses) / len(responses) if responses else 0.0


# -- shared ----------------------------------------------------------------------------------------

CHECK = {"letters": letters_ok, "story": story_ok, "ending": ending_ok}
MAX_TOKENS = {"letters": 32, "story": 112, "ending": 128}
FACTOR = {"letters": "uppercase share of letters", "story": "overlap with the rejected story",
          "ending": "share of short answers (<= 2 sentences)"}


def factor(task: str, items: list[dict], responses: list[list[str]]) -> float:
    """The interfering factor over every sampled answer (``responses[i]``: the answers to ``items[i]``)."""
    flat = [r for rs in responses for r in rs]
    if task == "letters":
        return uppercase_share(flat)
    if task == "story":
        return story_overlap([it for it, rs in zip(items, responses) for _ in rs], flat)
    return short_share(flat)


def pairs(items: list[dict], kind: str) -> list[dict]:
    """DPO rows in TRL's conversational format."""
    return [{"prompt": [{"role": "user", "content": it["prompt"]}], "chosen": [{"role": "assistant", "content": it[kind]}],
             "rejected": [{"role": "assistant", "content": it["rejected"]}]} for it in items]


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


# -- the test of the claim ---------------------------------------------------------------------------

def _cells(points: list[dict], task: str, endpoint: str) -> dict[tuple[str, int], list[float]]:
    """Per (arm, seed): the per-prompt value of the endpoint ("final": the share of passing samples at
    the last step; "auc": its trapezoid mean over [0, last step], the base model at 0)."""
    base = next((p for p in points if p["task"] == task and p["kind"] == "base"), None)
    runs: dict[tuple[str, int], dict[int, dict]] = {}
    for p in points:
        if p["task"] == task and p["kind"] in KINDS:
            runs.setdefault((p["kind"], p["seed"]), {})[p["step"]] = p
    out = {}
    for key, by_step in runs.items():
        if not any(p.get("last") for p in by_step.values()):
            continue
        steps = sorted(by_step)
        share = {st: [k / len(r) for k, r in zip(by_step[st]["passes"], by_step[st]["responses"])] for st in steps}
        if endpoint == "final":
            out[key] = share[steps[-1]]
        else:
            if base is None:
                continue
            share[0] = [k / len(r) for k, r in zip(base["passes"], base["responses"])]
            xs = sorted(share)
            area = [sum((xs[i + 1] - xs[i]) * (share[xs[i]][j] + share[xs[i + 1]][j]) / 2 for i in range(len(xs) - 1))
                    for j in range(len(share[xs[0]]))]
            out[key] = [a / (xs[-1] - xs[0]) for a in area]
    return out


def arm_test(points: list[dict], task: str, endpoint: str = "final", permutations: int = 20000,
             seed: int = 0) -> dict[str, Any] | None:
    """Refined minus interfering on ``endpoint`` over the (seed, prompt) cells both arms finished: the
    mean difference, a 95% percentile bootstrap interval over cells, a two-sided sign-flip permutation
    p over cells (add-one), and the exact two-sided sign-flip p over seed means. None before any seed
    finished in both arms."""
    cells = _cells(points, task, endpoint)
    seeds = sorted({sd for (k, sd) in cells if ("refined", sd) in cells and ("interfering", sd) in cells})
    if not seeds:
        return None
    diffs = [a - b for sd in seeds for a, b in zip(cells[("refined", sd)], cells[("interfering", sd)])]
    rng = random.Random(seed)
    n, mean = len(diffs), statistics.fmean(diffs)
    boots = sorted(statistics.fmean(rng.choices(diffs, k=n)) for _ in range(min(permutations, 10000)))
    lo, hi = boots[int(0.025 * len(boots))], boots[int(0.975 * len(boots)) - 1]
    extreme = sum(abs(sum(d if rng.random() < 0.5 else -d for d in diffs)) / n >= abs(mean) - 1e-12
                  for _ in range(permutations))
    per_seed = [statistics.fmean(a - b for a, b in zip(cells[("refined", sd)], cells[("interfering", sd)])) for sd in seeds]
    m = statistics.fmean(per_seed)
    flips = [[(1 if (mask >> i) & 1 else -1) * d for i, d in enumerate(per_seed)] for mask in range(2 ** len(per_seed))]
    seed_p = sum(abs(statistics.fmean(f)) >= abs(m) - 1e-12 for f in flips) / len(flips)
    return {"endpoint": endpoint, "seeds": seeds, "cells": n, "refined": round(statistics.fmean(
        x for sd in seeds for x in cells[("refined", sd)]), 4), "interfering": round(statistics.fmean(
            x for sd in seeds for x in cells[("interfering", sd)]), 4), "difference": round(mean, 4),
        "ci95": [round(lo, 4), round(hi, 4)], "p": round((extreme + 1) / (permutations + 1), 5),
        "seed_means": [round(x, 4) for x in per_seed], "p_seeds": round(seed_p, 5)}


def summary(points: list[dict]) -> dict[str, Any]:
    """Mean and standard deviation over seeds, per (task, pair type, step); the base model per task."""
    out: dict[str, Any] = {}
    for p in points:
        t = out.setdefault(p["task"], {"base": None, "refined": {}, "interfering": {}})
        if p["kind"] == "base":
            t["base"] = {m: p[m] for m in ("accuracy", "factor", "framed", "sentences") if m in p}
        else:
            t[p["kind"]].setdefault(p["step"], []).append(p)
    for t in out.values():
        for kind in KINDS:
            t[kind] = {step: {m: {"mean": round(statistics.fmean(x[m] for x in ps), 4),
                                  "sd": round(statistics.stdev([x[m] for x in ps]) if len(ps) > 1 else 0.0, 4),
                                  "n": len(ps)}
                              for m in ("accuracy", "factor", "framed", "sentences") if m in ps[0]}
                       for step, ps in sorted(t[kind].items())}
    return out


def _interval(points: list[dict], task: str, kind: str, step: int, metric: str) -> tuple[float, float]:
    """A 95% percentile bootstrap interval of the mean over seeds at ``step`` (for the shaded bands)."""
    xs = [p[metric] for p in points if p["task"] == task and p["kind"] == kind and p["step"] == step]
    if len(xs) < 2:
        return (xs[0], xs[0]) if xs else (0.0, 0.0)
    rng = random.Random(f"{task}{kind}{step}{metric}")
    boots = sorted(statistics.fmean(rng.choices(xs, k=len(xs))) for _ in range(2000))
    return boots[50], boots[1949]


def plot(summ: dict, points: list[dict], task: str, path: Path) -> None:
    """Accuracy and interfering factor against steps, both pair types (mean over seeds, a shaded 95%
    bootstrap interval over seeds), the base model as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = summ[task]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric, title in zip(axes, ("accuracy", "factor"), ("task accuracy", FACTOR[task])):
        if t["base"] is not None:
            ax.axhline(t["base"][metric], color="grey", linestyle="--", label="base model")
        for kind, colour in zip(KINDS, ("tab:blue", "tab:red")):
            steps = sorted(t[kind])
            if t["base"] is not None:
                xs, mean, band = [0] + steps, [t["base"][metric]], [(t["base"][metric],) * 2]
            else:
                xs, mean, band = steps, [], []
            mean += [t[kind][k][metric]["mean"] for k in steps]
            band += [_interval(points, task, kind, k, metric) for k in steps]
            ax.plot(xs, mean, marker="o", color=colour, label=f"{kind} pairs")
            ax.fill_between(xs, [b[0] for b in band], [b[1] for b in band], color=colour, alpha=0.15)
        ax.set_title(f"{task}: {title}")
        ax.set_xlabel("DPO steps")
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def rescore(out_dir: Path, points: list[dict]) -> list[dict]:
    """Accuracy and factor from the stored responses by the current checkers (so a corrected checker
    rescores a finished run without training again)."""
    items = {t: json.loads((out_dir / f"{t}.items.json").read_text())["heldout"] for t in {p["task"] for p in points}}
    out = []
    for p in points:
        responses = p["responses"]
        if responses and isinstance(responses[0], str):  # the first version kept one greedy answer per prompt
            responses = [[r] for r in responses]
        out.append({**p, **score(p["task"], items[p["task"]], responses)})
    return out


def write_outputs(out_dir: Path, points: list[dict], s: InterferingSettings) -> dict[str, Any]:
    """summary.json (means, the tests), one PNG per task and report.html in ``out_dir``."""
    import base64
    import html

    from spar.io import write_jsonl

    points = rescore(out_dir, points)
    # the points file keeps the figures the summary is made of: a corrected checker rewrites both
    write_jsonl(out_dir / "points.jsonl", points)
    summ = summary(points)
    for task in summ:
        summ[task]["tests"] = {e: arm_test(points, task, e, s.permutations) for e in ("final", "auc")}
    chosen = json.loads((out_dir / "settings.json").read_text()).get("chosen_lr", {}) \
        if (out_dir / "settings.json").exists() else {}
    for task, lr in chosen.items():
        if task in summ:
            summ[task]["learning_rate"] = lr
    (out_dir / "summary.json").write_text(json.dumps(summ, indent=1) + "\n")
    parts = ["<!doctype html><meta charset='utf-8'><title>interfering factors</title>"
             "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}td,th{border:1px solid #ccc;padding:3px 8px}"
             "table{border-collapse:collapse}</style><h1>Refined vs interfering pairs</h1>",
             f"<p>DPO{' + ' + str(s.sft_weight) + ' x SFT on chosen' if s.sft_weight else ''} from the same start "
             f"({'LoRA r' + str(s.lora_r) if s.lora else 'full fine-tuning'}), {s.steps} steps of batch {s.batch_size}, "
             f"beta {s.beta}, seeds {s.seeds}; {s.train} training pairs and {s.heldout} held-out prompts per task; "
             f"{s.samples} sampled answers (temperature {s.temperature}) per held-out prompt every {s.eval_every} steps. "
             f"Bands: 95% bootstrap intervals over seeds.</p><p>Primary endpoint: {html.escape(s.primary_endpoint)}</p>"]
    for task in summ:
        png = out_dir / f"{task}.png"
        plot(summ, points, task, png)
        t = summ[task]
        last = max(t["refined"], default=None)
        parts.append(f"<h2>{task}</h2><p>learning rate {t.get('learning_rate', s.learning_rate)}</p>"
                     f"<img alt='{task}' src='data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}'>")
        if last is None:
            continue
        parts.append("<table><tr><th></th><th>accuracy</th><th>" + html.escape(FACTOR[task]) + "</th></tr>"
                     + (f"<tr><td>base</td><td>{t['base']['accuracy']:.3f}</td><td>{t['base']['factor']:.3f}</td></tr>"
                        if t["base"] else "")
                     + "".join(f"<tr><td>{kind}, step {last} (n={t[kind][last]['accuracy']['n']})</td>"
                               f"<td>{t[kind][last]['accuracy']['mean']:.3f} ± {t[kind][last]['accuracy']['sd']:.3f}</td>"
                               f"<td>{t[kind][last]['factor']['mean']:.3f} ± {t[kind][last]['factor']['sd']:.3f}</td></tr>"
                               for kind in KINDS if last in t[kind]) + "</table>")
        for e, r in t["tests"].items():
            if r:
                parts.append(f"<p>{e}: refined − interfering {r['difference']:+.3f} (95% CI {r['ci95'][0]:+.3f} to "
                             f"{r['ci95'][1]:+.3f}), p = {r['p']:.4f} over {r['cells']} cells; over seed means p = "
                             f"{r['p_seeds']:.4f} ({len(r['seeds'])} seeds)</p>")
    (out_dir / "report.html").write_text("\n".join(parts))
    return summ
