"""The interfering-factors experiment (SPaR's Figure 4 test): DPO on *refined* pairs, whose chosen
answer differs from the rejected one only where the instruction was broken, against DPO on
*interfering* pairs, whose chosen answer is also right but differs in something else, from the
same start with the same steps, learning rate, beta and seeds.

- **letters**: "write the letter x exactly n times". Rejected: lowercase, a wrong count. Refined
  chosen: the right count, lowercase. Interfering chosen: the right count in UPPERCASE. Accuracy:
  the right letter the right number of times (case does not count); interfering factor: the share
  of uppercase letters in the answers.
- **story**: a short story with a given first and last sentence. The story between them is the
  base model's own (greedy) continuation of the first sentence. Rejected: the story without one of
  the two sentences. Refined chosen: the same story with it put back. Interfering chosen: the two
  sentences around *another* prompt's story. Accuracy: the answer starts and ends with the two
  sentences; interfering factor: how much of the rejected story the answer keeps (rapidfuzz
  partial ratio of the rejected story's middle within the answer, 0-1) -- the content that the
  interfering pairs teach the model to move away from.

Every evaluation is greedy, on held-out prompts, at step 0 (the base model) and every
``eval_every`` steps. Results are appended per (task, pair type, seed), so a rerun resumes.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import string
from pathlib import Path
from typing import Any

from pydantic import Field

from spar.settings import Settings

TASKS = ("letters", "story")
KINDS = ("refined", "interfering")


class InterferingSettings(Settings):
    tasks: list[str] = Field(default_factory=lambda: list(TASKS))
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    train: int = Field(32, ge=2)  # training pairs per task
    heldout: int = Field(16, ge=1)  # held-out prompts per task
    steps: int = Field(30, ge=1)  # DPO steps (batch 2) per run
    eval_every: int = Field(10, ge=1)
    learning_rate: float = Field(1e-5, gt=0)
    beta: float = Field(0.1, gt=0)
    batch_size: int = Field(2, ge=1)


# -- letters ---------------------------------------------------------------------------------------

LETTERS = [c for c in string.ascii_lowercase if c not in "ilo"]  # no letters that read as digits


def letter_prompt(x: str, n: int) -> str:
    return f"Write the letter {x} exactly {n} times, separated by spaces, and nothing else."


def letters_items(count: int, seed: int) -> list[dict]:
    rng = random.Random(f"letters:{seed}")
    out = []
    for i in range(count):
        x, n = rng.choice(LETTERS), rng.randint(3, 9)
        wrong = n + rng.choice([d for d in (-2, -1, 1, 2) if n + d >= 1])
        out.append({"id": f"letters-{seed}-{i}", "prompt": letter_prompt(x, n), "letter": x, "n": n,
                    "rejected": " ".join([x] * wrong), "refined": " ".join([x] * n),
                    "interfering": " ".join([x.upper()] * n)})
    return out


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
    rng = random.Random(f"story:{seed}")
    seen, out = set(), []
    while len(out) < count:
        first, last = f"{rng.choice(WHO)} {rng.choice(DID)}.", rng.choice(END)
        if (first, last) in seen:
            continue
        seen.add((first, last))
        out.append({"id": f"story-{seed}-{len(out)}", "first": first, "last": last, "prompt": story_prompt(first, last)})
    return out


def continuation_prompt(first: str) -> str:
    # (asked to continue the sentence, the 135M model repeats it; asked for a story about it, it writes one)
    return f"Write a very short story (two or three sentences) about this: {first}"


def middle_of(text: str, first: str, last: str) -> str | None:
    """The base model's story, cleaned: one paragraph without the frame sentences, its first two
    complete sentences; None when it wrote none."""
    text = " ".join(text.replace(first, " ").replace(last, " ").split())
    sentences = [x.strip() for x in re.findall(r"[^.!?]+[.!?]", text)]
    return " ".join(sentences[:2]) or None


def story_items(frames: list[dict], middles: list[str], seed: int) -> list[dict]:
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


CHECK = {"letters": letters_ok, "story": story_ok}


def factor(task: str, items: list[dict], responses: list[str]) -> float:
    return uppercase_share(responses) if task == "letters" else story_overlap(items, responses)


def pairs(items: list[dict], kind: str) -> list[dict]:
    """DPO rows in TRL's conversational format."""
    return [{"prompt": [{"role": "user", "content": it["prompt"]}], "chosen": [{"role": "assistant", "content": it[kind]}],
             "rejected": [{"role": "assistant", "content": it["rejected"]}]} for it in items]


# -- running -----------------------------------------------------------------------------------------

def greedy(model, tok, prompts: list[str], max_new_tokens: int, batch: int = 16) -> list[str]:
    """Greedy answers of a (training) model to user prompts, batched with left padding."""
    import torch

    was_training = model.training
    model.eval()
    tok.padding_side = "left"
    out: list[str] = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch):
            chats = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                     for p in prompts[start:start + batch]]
            enc = tok(chats, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
                                 top_k=None, pad_token_id=tok.pad_token_id)
            out += [tok.decode(g[enc["input_ids"].shape[1]:], skip_special_tokens=True).strip() for g in gen]
    if was_training:
        model.train()
    return out


MAX_TOKENS = {"letters": 32, "story": 112}


def evaluate(task: str, model, tok, held: list[dict]) -> dict[str, Any]:
    responses = greedy(model, tok, [it["prompt"] for it in held], MAX_TOKENS[task])
    acc = sum(CHECK[task](it, r) for it, r in zip(held, responses)) / len(held)
    return {"accuracy": round(acc, 4), "factor": round(factor(task, held, responses), 4), "responses": responses}


def build(task: str, s: InterferingSettings, base_path: str) -> tuple[list[dict], list[dict]]:
    """(train items, held-out items) of a task; story middles come from the base model, greedy."""
    if task == "letters":
        return letters_items(s.train, seed=1), letters_items(s.heldout, seed=2)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_path)
    model = AutoModelForCausalLM.from_pretrained(base_path)
    out = []
    for seed, count in ((1, s.train), (2, s.heldout)):
        frames = story_frames(count + count // 2 + 2, seed)  # room for stories the model did not write
        texts = greedy(model, tok, [continuation_prompt(f["first"]) for f in frames], 64)
        items = story_items(frames, [middle_of(t, f["first"], f["last"]) for t, f in zip(texts, frames)], seed)
        if len(items) < count:
            raise RuntimeError(f"the model wrote only {len(items)} usable stories for {count} story prompts")
        out.append(items[:count])
    return out[0], out[1]


def run(out_dir: Path, s: InterferingSettings, model: str = "embedded", show: bool = True) -> list[dict]:
    """Every (task, pair type, seed) run, appended to ``points.jsonl``; returns all points."""
    from transformers import AutoTokenizer, TrainerCallback

    from spar.io import Appender, write_jsonl
    from spar.stages import model_path
    from spar.train import train_dpo

    base = model_path(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "settings.json").write_text(json.dumps({**s.model_dump(), "model": model}, indent=1) + "\n")
    points_path = out_dir / "points.jsonl"
    done = [json.loads(x) for x in points_path.read_text().splitlines()] if points_path.exists() else []
    finished = {(p["task"], p["kind"], p["seed"]) for p in done if p.get("last")}
    if points_path.exists():  # a run cut short leaves points without its last one: drop them, redo it
        done = [p for p in done if (p["task"], p["kind"], p["seed"]) in finished or p["kind"] == "base"]
        write_jsonl(points_path, done)
    tok = AutoTokenizer.from_pretrained(base)
    for task in s.tasks:
        data_path = out_dir / f"{task}.items.json"
        if data_path.exists():
            train_items, held = (json.loads(data_path.read_text())[k] for k in ("train", "heldout"))
        else:
            train_items, held = build(task, s, base)
            data_path.write_text(json.dumps({"train": train_items, "heldout": held}, indent=1) + "\n")
        if not any(p["task"] == task and p["kind"] == "base" for p in done):
            from transformers import AutoModelForCausalLM

            ev = evaluate(task, AutoModelForCausalLM.from_pretrained(base), tok, held)
            point = {"task": task, "kind": "base", "seed": None, "step": 0, **ev}
            with Appender(points_path) as f:
                f.write(point)
            done.append(point)
        for kind in KINDS:
            for seed in s.seeds:
                if (task, kind, seed) in finished:
                    continue
                rows = pairs(train_items, kind)

                class Eval(TrainerCallback):
                    def on_step_end(self, args, state, control, model=None, **kw):
                        if state.global_step % s.eval_every == 0 or state.global_step == state.max_steps:
                            ev = evaluate(task, model, tok, held)
                            point = {"task": task, "kind": kind, "seed": seed, "step": state.global_step, **ev,
                                     "last": state.global_step == state.max_steps}
                            with Appender(points_path) as f:
                                f.write(point)
                            done.append(point)

                from spar.settings import TrainSettings

                ts = TrainSettings(learning_rate=s.learning_rate, beta=s.beta, max_steps=s.steps, batch_size=s.batch_size,
                                   warmup_ratio=0.0, max_length=256, sft_weight=0.0, dtype="fp32")
                if show:
                    print(f"{task} · {kind} pairs · seed {seed}", flush=True)
                train_dpo(base, rows, out_dir / "train" / f"{task}-{kind}-{seed}", ts, seed=seed, callbacks=[Eval()],
                          save=False)
    return done


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


FACTOR = {"letters": "uppercase share of letters", "story": "overlap with the rejected story"}


def plot(summ: dict, task: str, path: Path) -> None:
    """Accuracy and interfering factor against steps, both pair types (mean ± sd over seeds), the base as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = summ[task]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric, title in zip(axes, ("accuracy", "factor"), ("task accuracy", FACTOR[task])):
        if t["base"] is not None:
            ax.axhline(t["base"][metric], color="grey", linestyle="--", label="base model")
        for kind, colour in zip(KINDS, ("tab:blue", "tab:red")):
            steps = [0] + sorted(t[kind])
            mean = [t["base"][metric] if t["base"] else None] + [t[kind][k][metric]["mean"] for k in sorted(t[kind])]
            sd = [0.0] + [t[kind][k][metric]["sd"] for k in sorted(t[kind])]
            ax.plot(steps, mean, marker="o", color=colour, label=f"{kind} pairs")
            ax.fill_between(steps, [m - d for m, d in zip(mean, sd)], [m + d for m, d in zip(mean, sd)], color=colour, alpha=0.15)
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
        held = items[p["task"]]
        acc = sum(CHECK[p["task"]](it, r) for it, r in zip(held, p["responses"])) / len(held)
        extra = {}
        if p["task"] == "story":
            extra["framed"] = round(sum(story_framed(it, r) for it, r in zip(held, p["responses"])) / len(held), 4)
            extra["sentences"] = round(statistics.fmean(sentences(r) for r in p["responses"]), 2)
        out.append({**p, "accuracy": round(acc, 4), "factor": round(factor(p["task"], held, p["responses"]), 4), **extra})
    return out


def write_outputs(out_dir: Path, points: list[dict], s: InterferingSettings) -> dict[str, Any]:
    """summary.json, one PNG per task and report.html in ``out_dir``."""
    import base64
    import html

    points = rescore(out_dir, points)
    # the points file keeps the figures the summary is made of: a corrected checker rewrites both
    from spar.io import write_jsonl

    write_jsonl(out_dir / "points.jsonl", points)
    summ = summary(points)
    (out_dir / "summary.json").write_text(json.dumps(summ, indent=1) + "\n")
    parts = ["<!doctype html><meta charset='utf-8'><title>interfering factors</title>"
             "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}td,th{border:1px solid #ccc;padding:3px 8px}"
             "table{border-collapse:collapse}</style><h1>Refined vs interfering pairs</h1>",
             f"<p>DPO from the same start, {s.steps} steps of batch {s.batch_size}, lr {s.learning_rate}, beta {s.beta}, "
             f"seeds {s.seeds}; {s.train} training pairs and {s.heldout} held-out prompts per task; greedy evaluation every "
             f"{s.eval_every} steps. Mean ± sd over seeds (the sample sd, dividing by n - 1).</p>"]
    for task in summ:
        png = out_dir / f"{task}.png"
        plot(summ, task, png)
        t = summ[task]
        last = max(t["refined"], default=None)
        parts.append(f"<h2>{task}</h2><img alt='{task}' src='data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}'>")
        if last is not None:
            parts.append("<table><tr><th></th><th>accuracy</th><th>" + html.escape(FACTOR[task]) + "</th></tr>"
                         + (f"<tr><td>base</td><td>{t['base']['accuracy']:.3f}</td><td>{t['base']['factor']:.3f}</td></tr>"
                            if t["base"] else "")
                         + "".join(f"<tr><td>{kind}, step {last}</td><td>{t[kind][last]['accuracy']['mean']:.3f} ± "
                                   f"{t[kind][last]['accuracy']['sd']:.3f}</td><td>{t[kind][last]['factor']['mean']:.3f} ± "
                                   f"{t[kind][last]['factor']['sd']:.3f}</td></tr>" for kind in KINDS if last in t[kind])
                         + "</table>")
            if "framed" in t["refined"].get(last, {}):
                parts.append("<p>Story answers with both given sentences in place (however long), and their mean number "
                             "of sentences: " + "; ".join(
                                 f"{k} {t[k][last]['framed']['mean']:.3f} framed, {t[k][last]['sentences']['mean']:.1f} sentences"
                                 for k in KINDS if last in t[k]) + f"; base {t['base'].get('framed', 0):.3f} framed, "
                             f"{t['base'].get('sentences', 0):.1f} sentences.</p>")
    (out_dir / "report.html").write_text("\n".join(parts))
    return summ
