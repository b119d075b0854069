"""The refiner as judge: votes, majority, and the three modes.

- ``llm``: the model's majority vote decides.
- ``verifier``: the checkers decide; a prompt with a free constraint is then unknown (None).
- ``hybrid``: the checkers decide verifiable constraints, the vote decides free ones and whether
  the answer does the task itself (the judge prompt asks that first); an answer follows only if
  every checker passes and the vote says yes. A checker sees its constraint, not the task: without
  the vote, an off-task text that keeps the constraints would pass.

Votes: ``votes`` samples from one request (``n=votes``). An unparseable reply is an abstention:
stored as None and counted, never guessed. Tie policy: when yes and no votes are equal (all
abstentions included) the label is None, *undecided*; search does not accept an undecided node
and training data never uses one.
"""

from __future__ import annotations

from spar.io import DataError

from collections.abc import Sequence

from spar.constraints.checkers import follows as check_follows
from spar.constraints.checkers import is_verifiable
from spar.llm import Backend
from spar.settings import JudgeSettings, Mode
from spar.roles.templates import checklist, judge_chat, parse_judgement
from spar.types import Judgment, Prompt

def majority(votes: Sequence[bool | None]) -> bool | None:
    yes, no = sum(v is True for v in votes), sum(v is False for v in votes)
    if yes == no:
        return None
    return yes > no


def _agreeing(replies: Sequence[str], votes: Sequence[bool | None], label: bool | None) -> str:
    for r, v in zip(replies, votes):
        if v is label and label is not None:
            return r
    return ""


def _checker_rationale(prompt: Prompt, checks: list[bool], response: str = "", findings: bool = False) -> str:
    """A rationale written from the checkers' verdicts, for when no vote agrees with them; with
    ``findings``, an unmet line also says what the answer has (spar.constraints.findings)."""
    from spar.constraints.findings import requirement

    verifiable = [c for c in prompt.constraints if is_verifiable(c.kind)]
    return checklist([(requirement(c.text or c.kind, c.kind, c.kwargs, response, ok, findings), ok)
                      for c, ok in zip(verifiable, checks)])


def with_findings(judgment: Judgment, prompt: Prompt, response: str) -> Judgment:
    """The judgment with its checklist rewritten to say what the answer has (``judge.findings``),
    where the rationale is the checkers' (a vote's own words are left as they are)."""
    if judgment.rationale_from_vote or not judgment.checks:
        return judgment
    return judgment.model_copy(update={"rationale": _checker_rationale(prompt, judgment.checks, response, True)})


def verify(prompt: Prompt, response: str) -> tuple[list[bool], bool]:
    """Checker verdicts for the prompt's verifiable constraints, and whether free ones remain."""
    checks, free = [], False
    for c in prompt.constraints:
        if is_verifiable(c.kind):
            checks.append(check_follows(c.kind, c.kwargs, response, prompt=prompt.text))
        else:
            free = True
    return checks, free


def combine(prompt: Prompt, response: str, replies: Sequence[str], mode: Mode, findings: bool = False) -> Judgment:
    votes = [parse_judgement(r) for r in replies]
    vote = majority(votes)
    yes_share = sum(v is True for v in votes) / len(votes) if votes else 0.0
    if mode == "llm":
        return Judgment(follows=vote, votes=votes, rationale=_agreeing(replies, votes, vote), by="llm",
                        score=yes_share)
    checks, free = verify(prompt, response)
    passed = sum(checks) / len(checks) if checks else 1.0
    if mode == "verifier":
        label = (all(checks) if not free else (False if not all(checks) else None))
        score = 1.0 if label else 0.5 * passed
        rationale = _checker_rationale(prompt, checks, response, findings) if checks else ""
        return Judgment(follows=label, votes=[], rationale=rationale, by="verifier", checks=checks, score=score,
                        rationale_from_vote=False)
    # hybrid: the checkers can fail an answer, but only the vote can say that it still does the task
    # (a checker sees its constraint, not the task), so a pass needs the vote too.
    if not all(checks):
        label, score = False, 0.5 * passed
    else:
        label, score = vote, yes_share
    rationale = _agreeing(replies, votes, label)
    from_vote = bool(rationale)
    if not rationale and checks:
        rationale = _checker_rationale(prompt, checks, response, findings)
    return Judgment(follows=label, votes=votes, rationale=rationale, by="hybrid", checks=checks, score=score,
                    rationale_from_vote=from_vote)


def judge(backend: Backend | None, prompts: Sequence[Prompt], responses: Sequence[str], cfg: JudgeSettings,
          seed: int = 0, on_batch=None, sequential: bool = False) -> list[Judgment]:
    """Judge each (prompt, response); all votes of all items are one batched generate call.

    ``sequential`` sends one request per item and per vote instead (vote v uses seed + v), as the
    reference implementation does; it exists to measure what batching buys.
    """
    if len(prompts) != len(responses):
        raise ValueError("prompts and responses differ in length")
    if cfg.mode == "verifier":
        replies: list[list[str]] = [[] for _ in prompts]
    else:
        if backend is None:
            raise DataError(f"judge mode {cfg.mode!r} needs a model")
        chats = [judge_chat(p.text, r) for p, r in zip(prompts, responses)]
        if sequential:
            s = cfg.sampling(seed)
            replies = [[backend.generate([c], s.but(n=1, seed=s.seed + v), on_batch=on_batch)[0][0] for v in range(s.n)]
                       for c in chats]
        else:
            replies = backend.generate(chats, cfg.sampling(seed), on_batch=on_batch)
    return [combine(p, r, rep, cfg.mode, cfg.findings) for p, r, rep in zip(prompts, responses, replies)]
