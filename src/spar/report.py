"""report.html: scores per iteration (table and plot), tree statistics, and example pairs with the
difference between rejected and chosen highlighted. Reads only the run directory's files."""

from __future__ import annotations

import base64
import difflib
import html
import io
import json
from pathlib import Path

from spar.io import read_json, read_manifest


def iterations(run: Path) -> list[tuple[int, Path]]:
    """A run directory's iteration folders (``iter_N``), in order: (N, folder)."""
    return sorted((int(d.name[5:]), d) for d in Path(run).glob("iter_*") if d.name[5:].isdigit())


SPEND = ("calls", "requests", "prompt_tokens", "new_tokens")


def spend_totals(stages: dict[str, dict]) -> dict:
    """A manifest's stages summed: seconds and each spend figure; ``recorded`` is False where a
    finished stage has no spend (a manifest from before spend was recorded)."""
    total = {"seconds": 0.0, **{k: 0 for k in SPEND}, "recorded": True}
    for rec in stages.values():
        total["seconds"] += rec.get("seconds") or 0
        if "spend" in rec:
            for k in SPEND:
                total[k] += (rec["spend"] or {}).get(k, 0)
        elif rec.get("status") == "done":
            total["recorded"] = False
    total["seconds"] = round(total["seconds"], 1)
    return total


def scores(run: Path) -> dict[str, dict[int, dict]]:
    """benchmark -> iteration -> scores (iteration 0 is the base model), for the benchmarks scored
    by prompt (IFEval, held-out); the refiner's evaluations (LLMBar, refinement) are in `spar compare`."""
    out: dict[str, dict[int, dict]] = {}
    for t, d in iterations(run):
        for f in sorted((d / "eval").glob("*.json")):
            got = read_json(f)
            if isinstance(got, dict) and "prompt_strict" in got:
                out.setdefault(f.stem, {})[t] = got
    return out


EXAMPLES = 3  # example pairs per iteration


def sample_pairs(rows: list[dict], k: int, seed: int) -> list[dict]:
    """k rows drawn at random with a fixed seed (the same report every time), in file order."""
    import random

    idx = sorted(random.Random(seed).sample(range(len(rows)), min(k, len(rows))))
    return [rows[i] for i in idx]


def _trees(path: Path, ids: set) -> dict[str, dict]:
    """The trees of ``path`` whose id is in ``ids`` (raw rows; a run's own file)."""
    out: dict[str, dict] = {}
    if not path.exists():
        return out
    with path.open() as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if row.get("id") in ids:
                    out[row["id"]] = row
    return out


def tree_html(tree: dict) -> str:
    """The judge's rationale on the root (the failed answer) and the tree, one line per node, the
    path to the accepted refinement in bold."""
    nodes = {n["id"]: n for n in tree.get("nodes", [])}
    path, at = set(), tree.get("solution")
    while at is not None and at in nodes and at not in path:
        path.add(at)
        at = nodes[at]["parent"]
    root = nodes.get(tree.get("root", 0), {})
    rationale = (root.get("judgment") or {}).get("rationale") or "(no rationale)"
    lines = []
    for n in sorted(nodes.values(), key=lambda n: (n["depth"], n["id"])):
        j = n.get("judgment") or {}
        verdict = "accepted" if n["id"] == tree.get("solution") else ("follows" if j.get("follows") else "fails")
        extra = "; guard: " + ", ".join(n["guard"]) if n.get("guard") else ""
        sim = f", {n['similarity']:.2f} alike its parent" if n.get("similarity") is not None else ""
        text = ("&nbsp;" * 4 * n["depth"]) + html.escape(f"node {n['id']} (depth {n['depth']}): {verdict}{sim}{extra}")
        lines.append(f"<b>{text}</b>" if n["id"] in path else text)
    return (f"<details><summary>judge's rationale and the tree ({len(nodes)} nodes, {tree.get('strategy')})</summary>"
            f"<pre>{html.escape(rationale)}</pre><div><small>{'<br>'.join(lines)}</small></div></details>")


def diff_html(rejected: str, chosen: str) -> tuple[str, str]:
    a, b = rejected.split(" "), chosen.split(" ")
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        ta, tb = html.escape(" ".join(a[i1:i2])), html.escape(" ".join(b[j1:j2]))
        if op == "equal":
            left.append(ta)
            right.append(tb)
        else:
            if ta:
                left.append(f"<del>{ta}</del>")
            if tb:
                right.append(f"<ins>{tb}</ins>")
    return " ".join(left), " ".join(right)


def diff_rich(rejected: str, chosen: str):
    """One rich Text of the edit from rejected to chosen: removed words struck through in red, added
    words in green, the rest as it is (what `spar demo` prints)."""
    from rich.text import Text

    a, b = rejected.split(" "), chosen.split(" ")
    out = Text()
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(" ".join(a[i1:i2]) + " ")
            continue
        if i2 > i1:
            out.append(" ".join(a[i1:i2]), style="red strike")
            out.append(" ")
        if j2 > j1:
            out.append(" ".join(b[j1:j2]), style="bold green")
            out.append(" ")
    return out


def print_pairs(console, path: Path, k: int = 3) -> None:
    """A few of the iteration's DPO pairs (drawn as the report draws them): the prompt, the edit from
    the failed answer to its accepted refinement, how alike the two are."""
    from rich.markup import escape

    from spar.io import read_jsonl
    from spar.types import PreferencePair

    rows = [r.model_dump() for r in read_jsonl(path, PreferencePair)] if path.exists() else []
    console.print(f"\n[bold]{len(rows)} pair(s)[/bold] (failed answer -> accepted refinement)"
                  + ("; none this time: no refinement passed both the judge and the guard" if not rows else ""))
    for r in sample_pairs(rows, k, seed=1):
        o = r.get("origin", {})
        console.print(f"\n[bold]prompt[/bold]: {escape(r['prompt'][-1]['content'])}")  # "[name]" is text, not markup
        console.print(f"[dim]similarity {o.get('similarity')}, depth {o.get('depth')}, tree {o.get('tree')}[/dim]")
        console.print(diff_rich(r["rejected"][0]["content"], r["chosen"][0]["content"]))


def _plot(sc: dict[str, dict[int, dict]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for bench, per in sc.items():
        xs = sorted(per)
        ax.plot(xs, [per[x]["prompt_strict"] for x in xs], marker="o", label=f"{bench} prompt strict")
        ax.plot(xs, [per[x]["inst_strict"] for x in xs], marker="s", linestyle="--", label=f"{bench} inst strict")
    ax.set_xlabel("iteration (0 = base model)")
    ax.set_ylabel("accuracy (%)")
    ax.set_xticks(sorted({x for per in sc.values() for x in per}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def spend_table(run: Path) -> str:
    """Per stage: seconds, model calls, requests, prompt and new tokens (from the manifest)."""
    path = run / "manifest.json"
    if not path.exists():
        return ""
    stages = read_manifest(path)["stages"]
    method = ""
    if (run / "config.yaml").exists():
        import yaml

        method = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("method", "spar")
    rows = ["<h2>Spend per stage</h2>", f"<p>method: <b>{html.escape(str(method))}</b></p>",
            "<table><tr><th>stage</th><th>seconds</th><th>model calls</th><th>requests</th><th>prompt tokens</th>"
            "<th>new tokens</th></tr>"]
    total = spend_totals(stages)
    for key, rec in stages.items():
        sp = rec.get("spend") or {}
        rows.append(f"<tr><td>{html.escape(key)}</td><td>{rec.get('seconds', '–')}</td>"
                    + "".join(f"<td>{sp.get(k, '–')}</td>" for k in SPEND)
                    + "</tr>")
    rows.append(f"<tr><th>total</th><th>{total['seconds']:.1f}</th>"
                + "".join(f"<th>{total[k]}</th>" for k in SPEND) + "</tr></table>")
    return "\n".join(rows)


def write_report(run: str | Path) -> Path:
    from spar.io import write_text

    from spar.io import DataError

    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise DataError(f"{run}: not a run directory (no config.yaml)" if run.is_dir() else f"{run}: no such run directory")
    sc = scores(run)
    parts = ["<!doctype html><meta charset='utf-8'><title>spar report</title>",
             "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}td,th{border:1px solid #ccc;padding:4px 8px}"
             "table{border-collapse:collapse;margin:1em 0}del{background:#fdd}ins{background:#dfd;text-decoration:none}"
             ".pair{display:grid;grid-template-columns:1fr 1fr;gap:1em;border-top:1px solid #ccc;padding:0.5em 0}</style>",
             f"<h1>spar run: {html.escape(run.name)}</h1>"]
    parts.append("<h2>Scores per iteration</h2>")
    if sc:
        parts.append("<table><tr><th>benchmark</th><th>iteration</th><th>prompt strict</th><th>inst strict</th>"
                     "<th>prompt loose</th><th>inst loose</th><th>prompts</th></tr>")
        for bench, per in sc.items():
            for t, s in sorted(per.items()):
                parts.append(f"<tr><td>{bench}</td><td>{t}</td><td>{s['prompt_strict']:.2f}</td><td>{s['inst_strict']:.2f}</td>"
                             f"<td>{s['prompt_loose']:.2f}</td><td>{s['inst_loose']:.2f}</td><td>{s['n_prompts']}</td></tr>")
        parts.append("</table>")
        parts.append(f"<img alt='accuracy per iteration' src='data:image/png;base64,{_plot(sc)}'>")
    else:
        parts.append("<p>No evaluation yet.</p>")
    parts.append("<h2>Tree search</h2><table><tr><th>iteration</th><th>trees</th><th>solved</th><th>success</th>"
                 "<th>expanded / solved tree</th><th>solution depth</th><th>refinements</th><th>judged yes</th>"
                 "<th>judged yes, not faithful</th><th>guard: similarity / machinery / length</th></tr>")
    fmt = lambda v: "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    all_stats = {t: read_json(d / "stats.json") for t, d in iterations(run) if (d / "stats.json").exists()}
    stats = {t: st for t, st in all_stats.items() if "trees" in st}  # SPaR's tree stats
    for t, st in stats.items():
        g = st.get("guard_rejected") or {}
        parts.append(f"<tr><td>{t}</td><td>{st['trees']}</td><td>{st['solved']}</td><td>{fmt(st['success_rate'])}</td>"
                     f"<td>{fmt(st['mean_expanded_solved'])}</td><td>{fmt(st['mean_solution_depth'])}</td>"
                     f"<td>{fmt(st.get('refinements'))}</td><td>{fmt(st.get('judged_yes'))}</td>"
                     f"<td>{fmt(st.get('guard_rejected_judged_yes'))}</td>"
                     f"<td>{' / '.join(fmt(g.get(r)) for r in ('similarity', 'machinery', 'length'))}</td></tr>")
    parts.append("</table><p>A refinement is faithful when it passes the guard: similar to its parent, free of the "
                 "prompts' own machinery, of similar length (<code>spar.roles.guard</code>). Only faithful ones are "
                 "accepted.</p>")
    parts.append("<h2>Pair quality</h2><table><tr><th>iteration</th><th>pairs</th><th>dropped by the guard</th>"
                 "<th>with machinery</th><th>similarity refined pairs (mean; min / 25% / median / 75% / max)</th>"
                 "<th>similarity independent samples</th><th>length chosen / rejected (quartiles)</th></tr>")
    q = lambda xs: " / ".join(f"{x:.2f}" for x in xs) if xs else "–"  # noqa: E731
    for t, st in stats.items():
        parts.append(f"<tr><td>{t}</td><td>{fmt(st.get('pairs'))}</td><td>{fmt(st.get('pairs_dropped'))}</td>"
                     f"<td>{fmt(st.get('pairs_with_machinery'))}</td>"
                     f"<td>{fmt(st['refined_pair_similarity'])}; {q(st.get('pair_similarity_quartiles'))}</td>"
                     f"<td>{fmt(st['independent_pair_similarity'])}</td><td>{q(st.get('pair_length_ratio_quartiles'))}</td></tr>")
    parts.append("</table><p>Similarity: rapidfuzz ratio / 100 (normalised Indel similarity). The paper's refined pairs "
                 "are 0.90 alike against 0.85 for independent samples.</p>")
    other = {t: st for t, st in all_stats.items() if "trees" not in st}  # the baselines' own counts
    if other:
        parts.append("<h2>Pairs and targets of the method</h2><table><tr><th>iteration</th><th>counts</th></tr>")
        for t, st in other.items():
            parts.append(f"<tr><td>{t}</td><td><code>{html.escape(json.dumps(st))}</code></td></tr>")
        parts.append("</table>")
    parts.append(spend_table(run))
    parts.append("<h2>Example pairs</h2><p>Drawn at random (seeded), not the first ones: the failed answer and its "
                 "accepted refinement (the difference marked), the judge's rationale on the failed answer, and the "
                 "search tree that found the refinement.</p>")
    shown = 0
    for t, d in iterations(run):
        if not (d / "dpo.jsonl").exists():
            continue
        rows = [json.loads(line) for line in (d / "dpo.jsonl").read_text().splitlines() if line.strip()]
        picked = sample_pairs(rows, EXAMPLES, seed=t)
        trees = _trees(d / "trees.jsonl", {r.get("origin", {}).get("tree") for r in picked})
        for row in picked:
            left, right = diff_html(row["rejected"][0]["content"], row["chosen"][0]["content"])
            o = row.get("origin", {})
            quality = ", ".join(f"{k} {o[k]}" for k in ("similarity", "length_ratio", "machinery", "depth") if k in o)
            parts.append(f"<p><b>iteration {t}</b>: {html.escape(row['prompt'][-1]['content'])}<br><small>{html.escape(quality)}</small></p>"
                         f"<div class='pair'><div><b>rejected</b><br>{left}</div><div><b>chosen</b><br>{right}</div></div>")
            tree = trees.get(o.get("tree"))
            if tree is not None:
                parts.append(tree_html(tree))
            shown += 1
    if not shown:
        parts.append("<p>No pairs yet.</p>")
    out = run / "report.html"
    write_text(out, "\n".join(parts))
    return out
