"""Runs the pipeline with a deterministic scripted backend (tests only). Used in-process and as a
subprocess that the kill test SIGKILLs:  python tests/pipeline_harness.py RUN_DIR [DELAY_S]"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fake import FakeBackend  # noqa: E402
from spar.config import load_config  # noqa: E402
from spar.pipeline import Run  # noqa: E402


def _h(*parts) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def script(chat, sampling, k):
    """Same chat + sample index -> same text, whatever the batching or the order of calls."""
    i = sampling.seed + k
    text = "\n".join(m["content"] for m in chat)
    if any("Rewrite the response" in m["content"] for m in chat):  # a minimal edit: the commas out, a word changed
        parent = text.split("[Response]\n", 1)[1].split("\n\nFirst say", 1)[0]
        return f"{parent.replace(',', '')} v{_h(text, i) % 97}[[end]]"
    if "Write one instruction per line" in text:  # AutoIF: new instructions
        return "- Write every word in lowercase.\n- Answer in exactly five words.\n- Use no commas at all."
    if "Reply with the code only." in text:  # AutoIF, split requests: a function alone
        body = ("return response == response.lower()" if "lowercase" in text else
                "return ',' not in response" if "no commas" in text.lower() else "return undefined_helper(response)")
        return f"Here it is:\n```python\ndef evaluate(response):\n    # sample {i}\n    {body}\n```"
    if "Reply with the text only." in text:  # AutoIF, split requests: one case text, labelled by the request
        follows = "that obeys the rule" in text
        if "lowercase" in text:
            return f"all lower words {i}" if follows else f"Some Capitals {i}"
        if "no commas" in text.lower():
            return f'"a{i} b c"' if follows else f"a{i}, b, c"
        return f"plain text {i}"
    if "Write a function `evaluate(response)`" in text:  # AutoIF: a function and three cases per sample
        if "lowercase" in text:
            body, cases = "return response == response.lower()", [(f"abc {i}", True), (f"Abc {i}", False), (f"x{i} y", True)]
        elif "no commas" in text.lower():
            body, cases = "return ',' not in response", [(f"a{i}, b", False), (f"a{i} b", True), (f"c{i}, d", False)]
        else:  # a function that fails on every case (a name it never defined)
            body, cases = "return undefined_helper(response)", [(f"a{i}", True), (f"abcdef{i}", False), (f"q{i}", True)]
        func = f"def evaluate(response):\n    # sample {i}\n    {body}\n"
        return "```json\n" + json.dumps({"func": func, "cases": [{"input": x, "output": y} for x, y in cases]}) + "\n```"
    if "Write the instruction it checks, in one sentence." in text:  # AutoIF, split: one back-translation
        return '"Use lowercase only."' if "lower" in text else "Use no commas."
    if "write, for each one, the instruction it checks" in text:
        return json.dumps(["Use lowercase only."] * 3)
    if "contradict instruction A" in text:
        return "Final judgement: No"
    if "Winner: Judgment A" in text:  # the meta-judge: sometimes no winner at all
        return ["Winner: Judgment A", "Winner: Judgment B", "A is better, I think."][_h(text, i) % 3]
    if "10 (helpful and closely related)" in text:  # AutoIF's quality check: high, low, or no score line
        return ["Analysis: fine.\nScore: 9", "Analysis: off the query.\nScore: 3", "It is good. Score 9 maybe"][_h(text, i) % 3]
    if "Score: N" in text:  # the five-point judge: a score, or now and then none
        return f"Some points.\nScore: {_h(text, i) % 6}" if _h(text, i, "s") % 5 else "I cannot tell."
    if "Final judgement" in text:
        return "Final judgement: " + ("Yes" if _h(text, i) % 3 else "No")
    return (f"answer {_h(text, i) % 1000}: the keeper climbed the stairs every night and cleaned the lamp while the "
            "town slept" + (", with a comma" if _h(text, i, "c") % 2 else ""))


def factory(delay: float):
    class Slow(FakeBackend):
        def generate(self, requests, sampling, on_batch=None):
            time.sleep(delay * len(requests))
            return super().generate(requests, sampling, on_batch)

    def make(model, bs, **options):
        made.append(options)
        models.append(model)
        return Slow(script)

    return make


DATA_STAGE = {"spar": "data", "self_rewarding": "pairs", "meta_rewarding": "pairs", "self": "targets", "autoif": "pairs"}
made: list[dict] = []  # the options each backend was made with
models: list[str] = []  # the model string of each backend made


def config(**over):
    base = {
        "prompts.count": 12, "prompts.heldout": 0, "prompts.max_constraints": 2, "sample.k": 3, "batch_size": 4,
        "judge.votes": 3, "judge.mode": "hybrid", "search.budget": 6, "search.depth": 2,
        "eval.heldout": False,
    }
    return load_config(None, {**base, **over})


def run(run_dir, delay: float = 0.0, until: str = "data", **over) -> Run:
    r = Run(config(**over), run_dir, factory=factory(delay), until=until, show=False)
    r.run()
    return r


if __name__ == "__main__":
    method = sys.argv[3] if len(sys.argv) > 3 else "spar"
    run(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0, until=DATA_STAGE[method], method=method)
