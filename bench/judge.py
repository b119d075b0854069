"""Judge speed on the embedded model: a 5-vote judgment as one request (n=5) vs single votes, each
the mean over five seeds. Prints a table and, last, one JSON line of the figures.  python bench/judge.py
"""

from __future__ import annotations

import json
import time

from rich.console import Console
from rich.table import Table

from spar.machine import describe
from spar.llm import BackendOptions, load_backend
from spar.roles.judge import judge
from spar.settings import JudgeSettings
from spar.roles.templates import judge_chat
from spar.types import Constraint, Message, Prompt

PROMPT = Prompt(id="b", messages=[Message(role="user", content="Describe a rainy afternoon in under 60 words. Do not use commas.")],
                constraints=[Constraint(kind="free", text="under 60 words, no commas")])
RESPONSE = "Rain taps on the window. The street is grey and quiet and the air smells of wet leaves."


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    backend = load_backend("embedded", BackendOptions(batch_size=8))
    tokens = 160
    cfg = lambda votes: JudgeSettings(votes=votes, mode="llm", max_new_tokens=tokens, temperature=0.7)  # noqa: E731
    judge(backend, [PROMPT], [RESPONSE], cfg(1))  # warm-up
    # votes=1 decodes greedily; a single *sampled* vote (n=5 request cut to n=1) is the fair unit
    # Five seeds of each: a single sampled vote, and the five-vote request judge() sends. Votes end at
    # different lengths and a request runs until its longest vote ends, so the token counts are shown.
    singles, fives, single_tokens, five_tokens = [], [], [0], [0]
    count = lambda into: lambda _rows, ntok: into.__setitem__(0, into[0] + ntok)  # noqa: E731
    chat = judge_chat(PROMPT.text, RESPONSE)
    out: dict[str, list] = {"one": [], "five": []}
    keep = lambda key, fn: lambda: out[key].append(fn())  # noqa: E731
    for k in range(5):
        singles.append(timed(keep("one", lambda: backend.generate([chat], cfg(5).sampling(k).but(n=1),
                                                                  on_batch=count(single_tokens)))))
        fives.append(timed(keep("five", lambda: backend.generate([chat], cfg(5).sampling(k),
                                                                 on_batch=count(five_tokens)))))
    t_one, t_five = sum(singles) / 5, sum(fives) / 5
    # A request decodes until its longest vote ends: its decode steps are that vote's tokens (counted
    # here, outside the timed region, by re-encoding the texts). Seconds per step compare the cost of
    # one step of five rows with one of one row, whatever lengths the seeds happened to draw.
    length = lambda text: len(backend.tokenizer(text, add_special_tokens=False)["input_ids"]) + 1  # + end token  # noqa: E731
    steps_one = sum(length(r[0][0]) for r in out["one"]) / 5
    steps_five = sum(max(map(length, r[0])) for r in out["five"]) / 5
    per_step = (t_five / steps_five) / (t_one / steps_one)
    table = Table(title=f"judge, embedded model, sampled votes (T=0.7), {tokens} max new tokens per vote")
    for c in ("one vote", "5 votes, one request", "5 single requests", "5 votes / one vote",
              "tokens per single vote", "tokens per vote of 5", "longest vote of 5", "per step, 5 / 1"):
        table.add_column(c, justify="right")
    table.add_row(f"{t_one:.2f} s", f"{t_five:.2f} s", f"{sum(singles):.2f} s", f"{t_five / t_one:.2f}x",
                  f"{single_tokens[0] / 5:.0f}", f"{five_tokens[0] / 25:.0f}", f"{steps_five:.0f}", f"{per_step:.2f}x")
    Console(width=150).print(table)  # the table stays whole when piped to a file
    print(json.dumps({"machine": describe(), "seeds": 5,
                      "one_vote_mean_s": round(t_one, 2), "five_votes_one_request_mean_s": round(t_five, 2),
                      "ratio": round(t_five / t_one, 2), "tokens_per_single_vote": single_tokens[0] / 5,
                      "tokens_per_vote_of_five": five_tokens[0] / 25, "longest_vote_of_five": steps_five,
                      "steps_single": steps_one, "per_step_ratio": round(per_step, 2)}))


if __name__ == "__main__":
    main()
