"""The one registry of prompt templates. Search, judging, evaluation and training all build their
chats here, so the text a model is trained on is the text it is later asked with.
"""

from __future__ import annotations

import re

from spar.types import Message

JUDGE_SYSTEM = "You are a careful reviewer who checks whether a response follows every part of an instruction."

JUDGE = """Read the instruction and the response below, then decide whether the response follows the instruction completely.

[Instruction]
{instruction}

[Response]
{response}

First say whether the response does the task itself: it answers what was asked, on its topic. A response that does not is a No, whatever else it gets right. Then go through the instruction's requirements one at a time and check each against the response. End with a last line that reads exactly "Final judgement: Yes" if the task is done and every requirement is met, or "Final judgement: No" otherwise."""

REFINE = """Rewrite the response so that it follows the instruction completely. Fix only what your review found wrong and keep everything else as it is.

Put the rewritten response between the markers [[start]] and [[end]], and write nothing after [[end]]."""

REFINE_EDITS = """Fix the response so that it follows the instruction completely. Change only what your review found wrong, by quoting the exact words of the response to change. Write the changes between the markers [[edits]] and [[end]], using these operations:

REPLACE: exact words from the response
WITH: what they become
DELETE: exact words to remove
INSERT AFTER: exact words from the response
TEXT: what goes right after them
APPEND: what goes at the very end

Write nothing after [[end]]."""

START, END = "[[start]]", "[[end]]"
EDITS_OPEN = "[[edits]]"  # spar.roles.edits.OPEN
REFINE_FORMATS = ("rewrite", "edits")  # the refiner's reply: the whole refined answer, or edit operations

# Rationales written from the checkers' verdicts (verifier/hybrid modes, bootstrap data), and the
# one the refiner is given when a node has no rationale at all.
CHECKLIST_HEAD = "Checking each requirement:"
CHECK_MET, CHECK_NOT_MET = "met", "NOT met"
VERDICT = "Final judgement: {verdict}"
FALLBACK_RATIONALE = "The response does not follow every part of the instruction.\n" + VERDICT.format(verdict="No")

_FINAL = re.compile(r"final\s+judge?ment\s*[:：][\s*]*(yes|no)\b", re.IGNORECASE)  # what the guard flags as machinery
_VERDICT_LINE = re.compile(r"final[ \t]+judge?ment[ \t]*[:：](.*)", re.IGNORECASE)
# the innermost span: no second opening marker between the two
_ANSWER = re.compile(re.escape(START) + r"((?:(?!" + re.escape(START) + r").)*?)" + re.escape(END), re.DOTALL)


def judge_chat(instruction: str, response: str) -> list[Message]:
    return [Message(role="system", content=JUDGE_SYSTEM),
            Message(role="user", content=JUDGE.format(instruction=instruction, response=response))]


def refine_chat(instruction: str, response: str, judgment_text: str, fmt: str = "rewrite") -> list[Message]:
    """Multi-turn: the judge prompt, the judgment, then the request for a minimal rewrite (``fmt``
    "rewrite", the paper's) or for edit operations on the response ("edits", spar.roles.edits)."""
    return judge_chat(instruction, response) + [Message(role="assistant", content=judgment_text),
                                               Message(role="user", content=REFINE_EDITS if fmt == "edits" else REFINE)]


def checklist(items: list[tuple[str, bool]]) -> str:
    """A rationale from per-requirement verdicts: (requirement text, met) -> checklist + verdict."""
    lines = [f"- {CHECK_MET if ok else CHECK_NOT_MET}: {text}" for text, ok in items]
    verdict = "Yes" if all(ok for _, ok in items) else "No"
    return "\n".join([CHECKLIST_HEAD, *lines, VERDICT.format(verdict=verdict)])


def parse_judgement(reply: str) -> bool | None:
    """The verdict of the reply's 'Final judgement: Yes/No' line(s); None (an abstention) when there
    is none, or when its verdict lines disagree.

    Never guesses: only a line that is the verdict the template asks for counts (bold markers and a
    closing full stop allowed), not a phrase inside a sentence or a quotation; it reads each line
    once, in linear time.
    """
    if not isinstance(reply, str):
        return None
    found = set()
    for line in reply.splitlines():
        m = _VERDICT_LINE.fullmatch(line.strip(" \t*"))
        if not m:
            continue
        word = m.group(1).strip(" \t*").rstrip(".!").strip(" \t*").lower()
        if word in ("yes", "no"):
            found.add(word == "yes")
    return found.pop() if len(found) == 1 else None


def refine_prefill(fmt: str = "rewrite") -> Message:
    """The assistant turn a refinement starts from: the opening marker, so the model writes the
    answer (or its edits) at once instead of talking about it (small models rarely write the marker
    unasked)."""
    return Message(role="assistant", content=(EDITS_OPEN if fmt == "edits" else START) + "\n")


def parse_refinement(reply: str) -> str | None:
    """The answer between [[start]] and [[end]] (the last such span), stripped.

    The closing marker may be left out only at the very end of the reply (the model ended its
    turn right after the answer). None when there is no opening marker or the answer is empty.
    """
    if not isinstance(reply, str):
        return None
    spans = _ANSWER.findall(reply)
    if spans:
        text = spans[-1].strip()
    elif START in reply:
        text = reply.rsplit(START, 1)[1].strip()
    else:
        return None
    return text or None


EVOLVE = """Here is a task given to an AI assistant:

{seed}

Make the task more demanding by adding constraints to it. Add one main constraint of the type "{main}" ({main_desc}) and also {others}. The constraints must fit the task, must not contradict each other, and must be possible to check by reading the answer.

Write only the new task, between [[start]] and [[end]]."""

EVOLVE_CHECK = """Here is a task with several constraints:

{instruction}

Are its constraints consistent with each other and reasonable for the task (could a careful writer satisfy all of them at once)? Explain briefly, then end with a last line that reads exactly "Final judgement: Yes" or "Final judgement: No"."""


def evolve_chat(seed: str, main: str, main_desc: str, others: list[tuple[str, str]]) -> list[Message]:
    other_text = " and ".join(f'a constraint of the type "{n}" ({d})' for n, d in others) or "nothing else"
    return [Message(role="user", content=EVOLVE.format(seed=seed, main=main, main_desc=main_desc, others=other_text))]


def evolve_check_chat(instruction: str) -> list[Message]:
    return [Message(role="user", content=EVOLVE_CHECK.format(instruction=instruction))]


# Self-Rewarding's judge (spar.methods.rewarding): an additive five-point rubric, one point per
# criterion met, in our own words after the structure its paper describes; the reply ends with the
# score. Meta-Rewarding's meta-judge compares two such judgments of one response.
REWARD = """Judge how well the response below answers the user's request, with an additive five-point scale: start from zero and add one point for each of these that holds.

- One point if the response is on the user's request and gives some relevant information, even if it is incomplete or wanders.
- A second point if it covers a good part of what was asked, even without settling it completely.
- A third point if it answers the main parts of the request in a useful way.
- A fourth point if it speaks directly to the user, covers the request fully and is clear and well organised, with little left to improve.
- A fifth point if it fits the request exactly: no padding, expert knowledge, every requirement of the request met, a pleasure to read.

User: {instruction}

<response>{response}</response>

Go through the points one by one and justify the total in at most 100 words. End with a last line that reads exactly "Score: N", where N is the total from 0 to 5."""

META_JUDGE = """Two judgments of the same response follow. Both were asked to score it with this additive five-point scale, one point per criterion met:

- relevant and gives some information; - covers a good part of the request; - answers its main parts usefully; - direct, complete, clear and well organised; - fits the request exactly, every requirement met.

User: {instruction}

<response>{response}</response>

<judgment_a>{a}</judgment_a>

<judgment_b>{b}</judgment_b>

Which judgment applies the scale more accurately and more consistently to this response? Explain briefly, then end with a last line that reads exactly "Winner: Judgment A" or "Winner: Judgment B"."""

_SCORE = re.compile(r"score\s*[:：]\s*\**\s*([0-5](?:\.\d+)?)\b", re.IGNORECASE)
_WINNER = re.compile(r"winner\s*[:：]\s*\**\s*judge?ment\s*([ab])\b", re.IGNORECASE)


def reward_chat(instruction: str, response: str) -> list[Message]:
    return [Message(role="user", content=REWARD.format(instruction=instruction, response=response))]


def meta_judge_chat(instruction: str, response: str, a: str, b: str) -> list[Message]:
    return [Message(role="user", content=META_JUDGE.format(instruction=instruction, response=response, a=a, b=b))]


def parse_score(reply: str) -> float | None:
    """The score of the last "Score: N" line (0-5); None (an abstention) when there is none."""
    found = _SCORE.findall(reply) if isinstance(reply, str) else []
    if not found:
        return None
    value = float(found[-1])
    return value if 0 <= value <= 5 else None


def parse_quality(reply: str) -> float | None:
    """AutoIF's query/response quality (0-10) from the reply's last line when it is exactly "Score: N";
    None when it is not (no score)."""
    lines = reply.strip().splitlines() if isinstance(reply, str) else []
    m = re.fullmatch(r"Score: (\d+)", lines[-1].strip()) if lines else None
    return float(m.group(1)) if m and 0 <= int(m.group(1)) <= 10 else None


def parse_winner(reply: str) -> int | None:
    """+1 when judgment A wins, -1 when B does, None when the reply names no winner."""
    found = _WINNER.findall(reply) if isinstance(reply, str) else []
    if not found:
        return None
    return 1 if found[-1].lower() == "a" else -1


# AutoIF (spar.methods.autoif): our own wording of the structure its paper and code describe.
AUTOIF_AUGMENT = """You write instructions for testing an AI assistant. Write {n} new instructions, each one a single constraint on the *form* of a response (its words, letters, length, layout or punctuation) that a short Python function could check. Not about style, tone, metaphor or translation.

Examples of the kind wanted:
{examples}

Write one instruction per line, each line starting with "- "."""

AUTOIF_FUNCTION = """You write Python functions that check responses. The instruction is:

{instruction}

Write a function `evaluate(response)` that returns True if the string `response` follows the instruction and False otherwise, and three test cases. Answer with one JSON object in a ```json block. For example, for the instruction "End your answer with a question mark." the answer would be:
```json
{{"func": "def evaluate(response):\\n    return response.strip().endswith('?')", "cases": [{{"input": "Is it raining?", "output": true}}, {{"input": "It is raining.", "output": false}}, {{"input": "Shall we go?  ", "output": true}}]}}
```
Now write the JSON object for the instruction above."""

# autoif.requests=split: the function alone, and each test case its own request (labelled by what was
# asked), for small teachers that copy the joint request's worked example instead of following it
AUTOIF_FUNCTION_CODE = """Write a Python function `evaluate(response)` that returns True if a text obeys the rule "{instruction}" and False if it breaks the rule. Reply with the code only."""

AUTOIF_CASE = """Write a short text, one to three sentences on any topic, that {how} the rule "{instruction}". Reply with the text only."""

AUTOIF_BACK = """Here are Python functions that check a response. Read each and write, for each one, the instruction it checks, in one sentence. Answer with a JSON list of strings only.

{functions}"""

AUTOIF_BACK_ONE = """Here is a Python function that checks a response:

{function}

Write the instruction it checks, in one sentence. Reply with the instruction only."""

AUTOIF_SAME = """Instruction A: {a}
Instruction B: {b}

Does instruction B contradict instruction A? End with a last line that reads exactly "Final judgement: Yes" if it contradicts A, or "Final judgement: No" if it does not."""

AUTOIF_RESPONSE = """{query} {instruction}"""

AUTOIF_QUALITY = """You check whether a response serves both a query and an instruction attached to it. The response had to obey the instruction strictly, so it may be less helpful than a free answer; judge whether it still answers the query.

[Instruction] {instruction}
[Query] {query}
[Response] {response}

Analyse the response in detail, then end with a last line that reads exactly "Score: N", where N is from 0 (unrelated to the query) to 10 (helpful and closely related), and nothing else on that line."""


def autoif_chat(template: str, **fields: str) -> list[Message]:
    return [Message(role="user", content=template.format(**fields))]
