"""Draw a refinement tree in the terminal: value, votes, and each answer's diff against its parent."""

from __future__ import annotations

import difflib

from rich.text import Text
from rich.tree import Tree as RichTree

from spar.types import Node, Tree


def _votes(node: Node) -> str:
    if not node.judgment or not node.judgment.votes:
        return ""
    return "".join({True: "Y", False: "n", None: "?"}[v] for v in node.judgment.votes)


def diff_text(old: str, new: str, width: int = 400) -> Text:
    """Word-level diff: removed words struck through in red, added words in green."""
    a, b = old.split(), new.split()
    out = Text()
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(" ".join(a[i1:i2]) + " ", style="dim")
        if op in ("delete", "replace"):
            out.append(" ".join(a[i1:i2]) + " ", style="red strike")
        if op in ("insert", "replace"):
            out.append(" ".join(b[j1:j2]) + " ", style="green")
    if len(out) > width:
        out.truncate(width)
        out.append(" …", style="dim")
    return out


MAX_DEPTH = 50  # levels drawn at most


def render(tree: Tree) -> RichTree:
    by_parent: dict[int | None, list[Node]] = {}
    for n in tree.nodes:
        by_parent.setdefault(n.parent, []).append(n)
    path = set(tree.path())
    status = "[green]solved[/green]" if tree.solved else "[red]unsolved[/red]"
    top = RichTree(f"[bold]{tree.id}[/bold]  {tree.strategy}  {status}  expanded={tree.expanded}  nodes={len(tree.nodes)}")

    def label(n: Node, parent: Node | None) -> Text:
        mark = "★ " if n.id == tree.solution else ("• " if n.id in path else "")
        guard = f" guard={','.join(n.guard)}" if n.guard else ""
        sim = f" sim={n.similarity:.2f}" if n.similarity is not None else ""
        head = Text(f"{mark}#{n.id} value={n.value:.2f} votes={_votes(n) or '-'}{sim}{guard}  ",
                    style="bold green" if n.id == tree.solution else ("bold red" if n.guard else "bold"))
        body = diff_text(parent.response, n.response) if parent else Text(n.response[:300], style="dim")
        return head + body

    by_id = {n.id: n for n in tree.nodes}

    # built with a stack (no recursion), and no deeper than MAX_DEPTH levels: a drawing of a 100,000-node
    # chain would be 100,000 levels of indentation
    stack = [(top, by_id[tree.root], 0)]
    hidden = 0
    while stack:
        branch, node, depth = stack.pop()
        if depth >= MAX_DEPTH:
            hidden += 1
            stack.extend((branch, c, depth + 1) for c in by_parent.get(node.id, []))
            continue
        sub = branch.add(label(node, by_id.get(node.parent) if node.parent is not None else None))
        stack.extend((sub, c, depth + 1) for c in reversed(by_parent.get(node.id, [])))
    if hidden:
        top.add(Text(f"… {hidden} nodes deeper than {MAX_DEPTH} levels not drawn", style="dim"))
    return top
