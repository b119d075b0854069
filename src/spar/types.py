"""The data contract: the only records passed between stages.

Every record is a pydantic model with ``schema_version``; unknown fields are rejected, so a
reader never silently drops what a newer writer added. No heavy imports here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1

Role = Literal["system", "user", "assistant"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)
    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="after")
    def _known_version(self) -> "Record":
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"schema_version {self.schema_version} is not supported (this spar reads {SCHEMA_VERSION})")
        return self


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role
    content: str


class Constraint(BaseModel):
    """One constraint of a prompt. ``kind`` is a checker id (IFEval's, e.g.
    ``length_constraints:number_words``) or ``free`` when only an LLM can judge it."""

    model_config = ConfigDict(extra="forbid")
    kind: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    text: str = ""  # the constraint as the instruction words it


class Prompt(Record):
    id: str
    messages: list[Message]
    constraints: list[Constraint] = Field(default_factory=list)
    source: str = "user"

    @property
    def text(self) -> str:
        """The last user turn: what the answer must follow."""
        return next(m.content for m in reversed(self.messages) if m.role == "user")

    @model_validator(mode="after")
    def _has_user_turn(self) -> "Prompt":
        if not any(m.role == "user" for m in self.messages):
            raise ValueError("a prompt needs at least one user message")
        return self


class Judgment(Record):
    follows: bool | None  # majority label; None = undecided (tie, or every vote abstained)
    votes: list[bool | None] = Field(default_factory=list)  # None = unparseable reply (abstention)
    rationale: str = ""  # one reply that agrees with the majority
    by: Literal["llm", "verifier", "hybrid"] = "llm"
    checks: list[bool] = Field(default_factory=list)  # verifier verdict per verifiable constraint, in order
    score: float | None = None  # how close to following, in [0, 1]; > 0.5 only when it follows
    rationale_from_vote: bool = True  # False: the rationale was written from the checkers' verdicts

    @property
    def value(self) -> float:
        """The judge's score; by default the share of yes votes (abstentions count as not-yes)."""
        if self.score is not None:
            return self.score
        if not self.votes:
            return 1.0 if self.follows else 0.0
        return sum(v is True for v in self.votes) / len(self.votes)

    @property
    def abstentions(self) -> int:
        return sum(v is None for v in self.votes)


class Completion(Record):
    """A row of ``spar generate``: one prompt and its n completions."""

    id: str
    prompt: list[Message]
    completions: list[str]
    constraints: list[Constraint] = Field(default_factory=list)  # carried over so judges can verify


class JudgedSample(Record):
    """A row of ``spar judge``: one completion of one prompt and its judgment."""

    id: str  # prompt id
    index: int  # which completion of the prompt
    response: str
    judgment: Judgment

    @property
    def key(self) -> str:
        return f"{self.id}#{self.index}"


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int
    parent: int | None
    depth: int
    response: str
    judgment: Judgment | None = None
    reply: str = ""  # the refiner's raw reply that produced this node (empty for the root)
    guard: list[str] = Field(default_factory=list)  # why it is not the same answer as its parent (spar.roles.guard)
    similarity: float | None = None  # to its parent (case-folded ratio); None for the root or with the guard off

    @property
    def value(self) -> float:
        return self.judgment.value if self.judgment else 0.0

    @property
    def faithful(self) -> bool:
        """Passed the guard (or none ran): may be accepted and expanded."""
        return not self.guard


class Tree(Record):
    id: str  # the negative's key: "<prompt id>#<sample index>"
    prompt_id: str
    root: int = 0
    nodes: list[Node]
    solved: bool
    expanded: int  # nodes whose children were requested
    strategy: str
    solution: int | None = None  # node id of the accepted refinement

    @model_validator(mode="after")
    def _well_formed(self) -> "Tree":
        """Bad trees are bad input, caught when read: no nodes, repeated ids, a dangling parent or
        solution, a cycle (a walk to the root that never ends)."""
        if not self.nodes:
            raise ValueError("a tree needs at least its root node")
        by_id = {n.id: n for n in self.nodes}
        if len(by_id) != len(self.nodes):
            raise ValueError("node ids repeat")
        if self.root not in by_id or by_id[self.root].parent is not None:
            raise ValueError(f"root {self.root} is not a node without a parent")
        for n in self.nodes:
            if n.parent is not None and n.parent not in by_id:
                raise ValueError(f"node {n.id} has parent {n.parent}, which is not in the tree")
            if n.parent is None and n.id != self.root:
                raise ValueError(f"node {n.id} has no parent but is not the root")
        # every walk to the root ends: each node is visited once over all walks (linear, no recursion)
        reaches_root: set[int] = {self.root}
        for n in self.nodes:
            walk, on_walk, cur = [], set(), n
            while cur.id not in reaches_root:
                if cur.id in on_walk:
                    raise ValueError(f"node {n.id}'s parents form a cycle")
                walk.append(cur.id)
                on_walk.add(cur.id)
                cur = by_id[cur.parent]
            reaches_root.update(walk)
        if self.solution is not None and self.solution not in by_id:
            raise ValueError(f"solution {self.solution} is not a node of the tree")
        return self

    def path(self) -> list[int]:
        """Node ids from the root to the solution (empty when unsolved)."""
        if self.solution is None:
            return []
        by_id = {n.id: n for n in self.nodes}
        out, cur = [], self.solution
        while cur is not None:
            out.append(cur)
            cur = by_id[cur].parent
        return out[::-1]


class Negative(Record):
    """A failed actor answer chosen as a tree root, with its prompt and judgment."""

    prompt: Prompt
    index: int  # which of the prompt's samples
    response: str
    judgment: Judgment

    @property
    def key(self) -> str:
        return f"{self.prompt.id}#{self.index}"


class SFTRow(BaseModel):
    """A conversational SFT row, what ``spar train sft`` reads (TRL's conversational format): the
    chat, whose last turn (the assistant's) is the target, and where it came from. Built by
    :meth:`of` and written as its plain dict (``{"messages", "origin"}``), so the files stay TRL's."""

    model_config = ConfigDict(extra="forbid")
    messages: list[Message]
    origin: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, chat: Sequence[Message | dict[str, str]], reply: str, origin: dict[str, Any]) -> dict[str, Any]:
        """The row ``chat`` + the assistant's ``reply``, validated, as the dict that is written."""
        msgs = [m if isinstance(m, Message) else Message(**m) for m in chat]
        row = cls(messages=[*msgs, Message(role="assistant", content=reply)], origin=origin)
        return row.model_dump()


class PreferencePair(Record):
    """TRL's conversational preference format plus provenance."""

    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    origin: dict[str, Any] = Field(default_factory=dict)


class Scored(Record):
    """A row of the five-point judge (Self-/Meta-Rewarding): one answer, its judge samples and score."""

    id: str  # prompt id
    index: int  # which completion of the prompt
    response: str
    scores: list[float | None] = Field(default_factory=list)  # per judge sample; None = no score in the reply
    replies: list[str] = Field(default_factory=list)  # the judge replies (none with the verifier judge)
    score: float | None = None  # mean of the parsed scores; None = unscored
    by: Literal["llm", "verifier"] = "llm"

    @property
    def key(self) -> str:
        return f"{self.id}#{self.index}"


class MetaJudged(Record):
    """A row of the meta-judge (Meta-Rewarding): one answer's judgments compared two by two, both orders."""

    id: str  # prompt id
    index: int  # the answer judged
    response: str
    judgments: list[str]  # the players: distinct judgment texts that carry a score
    pairs: list[tuple[int, int]] = Field(default_factory=list)  # (shown first, shown second)
    outcomes: list[int] = Field(default_factory=list)  # per pair: +1 first wins, -1 second wins, 0 no winner read
    replies: list[str] = Field(default_factory=list)


class Quality(Record):
    """A row of AutoIF's query/response quality check (spec section 9): per response, the mean of
    its parsed 0-10 scores (None: not asked, its pass rate being below the threshold, or no score
    parsed) and the judge's replies."""

    id: str
    scores: list[float | None]
    replies: list[list[str]]


class Feedback(Record):
    """A row of AutoIF's execution feedback: one input, its responses and their pass rates."""

    id: str
    prompt: list[Message]
    completions: list[str]
    pass_rates: list[float]
