"""Refinements as edit operations: the refiner quotes a span of the answer and says what to do with
it, and spar applies the operations to the answer. The result is the refined answer that the judge,
the guard and the DPO pair see; an operation that does not apply (its quote is not in the answer)
fails the refinement, and the search counts it.

The format, one block per operation, between ``[[edits]]`` and ``[[end]]``::

    [[edits]]
    REPLACE: a span quoted from the answer
    WITH: what it becomes
    DELETE: a span to remove
    INSERT AFTER: a span quoted from the answer
    TEXT: what goes right after it
    APPEND: what goes at the very end
    [[end]]

A value runs from its keyword to the next keyword at the start of a line (or the closing marker);
one space after the colon and one newline before the next keyword are not part of it, so a value
may hold several lines and may begin with a newline (``APPEND:`` then two line breaks starts a new
paragraph). An edit is minimal by construction: what is not quoted stays as it was.

:func:`ops_between` writes the operations that turn one text into another (training data from a
failed answer and its restoration), choosing quotes that occur once in the answer.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

OPEN, CLOSE = "[[edits]]", "[[end]]"
_KEYS = ("REPLACE", "WITH", "DELETE", "INSERT AFTER", "TEXT", "APPEND")
_KEY = re.compile(r"^(REPLACE|WITH|DELETE|INSERT AFTER|TEXT|APPEND):", re.MULTILINE)
_TOKEN = re.compile(r"\s+|[^\s]+")


@dataclass(frozen=True)
class Op:
    kind: str  # replace | delete | insert | append
    quote: str = ""  # the span of the answer it acts on (none for append)
    text: str = ""  # the new text (none for delete)


class EditError(ValueError):
    """Operations that cannot be read, or that do not apply to the answer; the message says which."""


def render(ops: list[Op]) -> str:
    """The reply that states ``ops`` in the format above."""
    lines = [OPEN]
    for op in ops:
        if op.kind == "replace":
            lines += [f"REPLACE: {op.quote}", f"WITH: {op.text}"]
        elif op.kind == "delete":
            lines.append(f"DELETE: {op.quote}")
        elif op.kind == "insert":
            lines += [f"INSERT AFTER: {op.quote}", f"TEXT: {op.text}"]
        elif op.kind == "append":
            lines.append(f"APPEND: {op.text}")
        else:  # pragma: no cover - Op is built here and in parse
            raise ValueError(op.kind)
    lines.append(CLOSE)
    return "\n".join(lines)


def parse(reply: str) -> list[Op]:
    """The operations of a reply (the last ``[[edits]]`` block; the closing marker may be missing at
    the very end). EditError when there is no block, a keyword is out of place, or there is no op."""
    if not isinstance(reply, str) or OPEN not in reply:
        raise EditError("no [[edits]] block")
    body = reply.rsplit(OPEN, 1)[1]
    body = body.split(CLOSE, 1)[0]
    marks = list(_KEY.finditer(body))
    if not marks:
        raise EditError("no operation in the [[edits]] block")
    if body[:marks[0].start()].strip():
        raise EditError("text before the first operation")
    fields: list[tuple[str, str]] = []
    for m, nxt in zip(marks, [*marks[1:], None]):
        value = body[m.end():nxt.start() if nxt else len(body)]
        value = value[1:] if value.startswith(" ") else value
        value = value[:-1] if value.endswith("\n") else value
        fields.append((m.group(1), value))
    ops: list[Op] = []
    i = 0
    while i < len(fields):
        key, value = fields[i]
        if key in ("REPLACE", "INSERT AFTER"):
            second = "WITH" if key == "REPLACE" else "TEXT"
            if i + 1 >= len(fields) or fields[i + 1][0] != second:
                raise EditError(f"{key} without its {second}")
            if not value:
                raise EditError(f"{key} quotes nothing")
            ops.append(Op("replace" if key == "REPLACE" else "insert", value, fields[i + 1][1]))
            i += 2
        elif key == "DELETE":
            if not value:
                raise EditError("DELETE quotes nothing")
            ops.append(Op("delete", value))
            i += 1
        elif key == "APPEND":
            ops.append(Op("append", text=value))
            i += 1
        else:
            raise EditError(f"{key} without the operation it belongs to")
    return ops


def apply(answer: str, ops: list[Op]) -> str:
    """``answer`` with ``ops`` applied in order, each to the text the previous ones left; a quote
    acts on its first occurrence. EditError naming the first quote that is not there."""
    text = answer
    for n, op in enumerate(ops, 1):
        if op.kind == "append":
            text = text + op.text
            continue
        at = text.find(op.quote)
        if at < 0:
            short = op.quote if len(op.quote) <= 60 else op.quote[:57] + "..."
            raise EditError(f"operation {n} quotes {short!r}, which is not in the answer")
        end = at + len(op.quote)
        if op.kind == "replace":
            text = text[:at] + op.text + text[end:]
        elif op.kind == "delete":
            text = text[:at] + text[end:]
        else:  # insert after
            text = text[:end] + op.text + text[end:]
    return text


def refine(answer: str, reply: str) -> str:
    """The refined answer a reply's operations make of ``answer`` (EditError when they cannot)."""
    return apply(answer, parse(reply))


def _unique(text: str, tokens: list[str], lo: int, hi: int) -> tuple[int, int]:
    """Token bounds [lo, hi) widened one token at a time (alternately left and right) until the span
    they cover occurs exactly once in ``text``."""
    offsets = [0]
    for t in tokens:
        offsets.append(offsets[-1] + len(t))
    while True:
        span = text[offsets[lo]:offsets[hi]]
        # once in the text, overlaps counted: its first occurrence is here and none starts later
        if span.strip() and text.find(span) == offsets[lo] and text.find(span, offsets[lo] + 1) < 0:
            return lo, hi
        if lo == 0 and hi == len(tokens):
            return lo, hi
        if lo > 0 and (hi == len(tokens) or (hi - lo) % 2 == 0):
            lo -= 1
        else:
            hi += 1


def ops_between(old: str, new: str) -> list[Op]:
    """Operations that turn ``old`` into ``new``: one per changed run of words, each quoting a span
    that occurs once in ``old`` (widened by neighbouring words where needed); a single REPLACE of the
    whole changed region when the separate ones would not reproduce ``new``. Empty when equal."""
    if old == new:
        return []
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    ops: list[Op] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        add = "".join(b[j1:j2])
        if tag == "insert" and i1 == len(a):
            ops.append(Op("append", text=add))
            continue
        if tag == "insert":
            if i1 == 0:  # before the first word: replace the first word with the insertion and it
                lo, hi = _unique(old, a, 0, 1)
                ops.append(Op("replace", "".join(a[lo:hi]), add + "".join(a[lo:hi])))
            else:
                lo, hi = _unique(old, a, i1 - 1, i1)
                quote = "".join(a[lo:hi])
                tail = "".join(a[i1:hi])  # widened right past the insertion point: it is re-stated
                ops.append(Op("insert", quote, add) if not tail else Op("replace", quote, "".join(a[lo:i1]) + add + tail))
            continue
        lo, hi = _unique(old, a, i1, i2)
        before, after = "".join(a[lo:i1]), "".join(a[i2:hi])
        quote = "".join(a[lo:hi])
        if tag == "delete" and not before and not after:
            ops.append(Op("delete", quote))
        else:
            ops.append(Op("replace", quote, before + add + after))
    try:
        if apply(old, ops) == new:
            return ops
    except EditError:
        pass
    # one REPLACE of the region from the first change to the last, widened to be unique
    first = next(i for i, (x, y) in enumerate(zip(a + [None], b + [None])) if x != y)
    if first == len(a):
        return [Op("append", text="".join(b[first:]))]
    k = 0
    while k < min(len(a), len(b)) - first and a[len(a) - 1 - k] == b[len(b) - 1 - k]:
        k += 1
    return _whole(old, new, a, b, first, len(a) - k, len(b) - k)


def _whole(old: str, new: str, a: list[str], b: list[str], first: int, i2: int, j2: int) -> list[Op]:
    """One REPLACE from the first changed token to the last, its quote widened until it is unique."""
    lo, hi = _unique(old, a, first, max(i2, first + 1))
    # tokens a[lo:first] and a[i2:hi] are unchanged context (they equal b's at the same distance)
    right = "".join(a[i2:hi]) if hi > i2 else ""
    op = Op("replace", "".join(a[lo:hi]), "".join(a[lo:first]) + "".join(b[first:j2]) + right)
    if apply(old, [op]) != new:  # pragma: no cover - a replace of a unique span always reproduces
        raise EditError("no edit reproduces the new text")
    return [op]
