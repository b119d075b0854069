"""The interfering-factors experiment's tasks: their items, pair types, checkers and factors
(see :mod:`spar.experiments.interfering`)."""

from __future__ import annotations

import random
import re
import statistics
import string
import zlib

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
