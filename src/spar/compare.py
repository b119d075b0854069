"""``spar compare``: runs side by side, with the paired significance of each run's change.

Reads only what a run directory keeps: ``config.yaml``, ``manifest.json``, ``iter_<t>/eval/<bench>.json``
and ``<bench>.outcomes.jsonl`` (per prompt), the pairs or SFT rows of each iteration and their stats.
A run that did not evaluate its starting model (``eval.before: false``) borrows iteration 0 from
another run in the list with the same model, inference dtype and evaluation length, and says so.

Significance: the exact McNemar test on the per-prompt strict outcomes of iteration 0 and the last
iteration (two-sided binomial test of the discordant prompts at 1/2; written here rather than
pulling in scipy for one formula, and tested against known values).
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from spar.io import DataError, iter_json_lines, read_json, read_manifest
from spar.report import iterations, spend_totals

BENCHES = ("ifeval", "heldout")
METRICS = ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose")


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def _jsonl(path: Path) -> list[dict]:
    return [row for _, row in iter_json_lines(path)] if path.exists() else []


def _outcomes(path: Path) -> dict[str, bool]:
    """Prompt id -> strict verdict, from an eval's outcomes file (a row of another shape names its line)."""
    out = {}
    for lineno, r in (iter_json_lines(path) if path.exists() else ()):
        if "id" not in r or not isinstance(r.get("follows_strict"), bool):
            raise DataError(f"{path}:{lineno}: an outcome row needs 'id' and a true/false 'follows_strict'")
        out[str(r["id"])] = r["follows_strict"]
    return out


def load_run(run: Path) -> dict[str, Any]:
    import yaml

    if not (run / "config.yaml").exists():
        raise DataError(f"{run}: not a run directory (no config.yaml)")
    cfg = yaml.safe_load((run / "config.yaml").read_text()) or {}
    manifest = read_manifest(run / "manifest.json") if (run / "manifest.json").exists() else {"stages": {}}
    out: dict[str, Any] = {"run": str(run), "method": cfg.get("method", "spar"), "model": cfg.get("model"),
                           "judge": (cfg.get("judge") or {}).get("mode"), "dtype": cfg.get("dtype"),
                           "eval_tokens": (cfg.get("eval") or {}).get("max_new_tokens"), "iterations": {}}
    for t, d in iterations(run):
        it: dict[str, Any] = {}
        for bench in BENCHES:
            if (d / "eval" / f"{bench}.json").exists():
                it[bench] = read_json(d / "eval" / f"{bench}.json")
                it[bench + "_outcomes"] = _outcomes(d / "eval" / f"{bench}.outcomes.jsonl")
        if (d / "eval" / "llmbar.json").exists():
            by_k = read_json(d / "eval" / "llmbar.json")["by_votes"]
            k = max(by_k, key=int)
            it["llmbar"] = {"votes": int(k), "accuracy": by_k[k]["Overall (mean of subsets)"]["accuracy"],
                            "unparseable": by_k[k].get("unparseable")}
        if (d / "eval" / "followbench.json").exists():
            fb = read_json(d / "eval" / "followbench.json")
            it["followbench"] = {"items": fb.get("items"), "hsr": fb.get("hsr_mean"), "ssr": fb.get("ssr_mean"),
                                 "csl": fb.get("csl"), "judge": fb.get("judge"), "unparsed": fb.get("judge_unparsed")}
        if (d / "eval" / "refine.json").exists():
            rf = read_json(d / "eval" / "refine.json")
            strategy = next((k for k in ("bfs", "dfs") if k in rf), None)
            it["refine"] = {"failed": rf.get("failed_answers"), "greedy": (rf.get("greedy") or {}).get("pass"),
                            "search": (rf.get(strategy) or {}).get("pass") if strategy else None,
                            "similarity": (rf.get("greedy") or {}).get("mean_similarity"),
                            "checker_judge": rf.get("judge_is_the_checkers")}
        rows = _jsonl(d / "dpo.jsonl") or _jsonl(d / "sft.jsonl")
        if rows:
            it["rows"] = len(rows)
            sims = [r["origin"]["similarity"] for r in rows if "similarity" in (r.get("origin") or {})]
            it["pair_similarity"] = round(sum(sims) / len(sims), 4) if sims else None
        if (d / "stats.json").exists():
            st = read_json(d / "stats.json")
            it["independent_similarity"] = st.get("independent_pair_similarity")
        if it:
            out["iterations"][t] = it
    total = spend_totals(manifest.get("stages", {}))
    out["spend"] = {k: total[k] for k in ("calls", "new_tokens", "seconds", "recorded")}
    return out


def _borrow_start(runs: list[dict]) -> None:
    """Give a run without iteration 0 the iteration 0 of another run with the same model and evaluation."""
    for r in runs:
        if 0 in r["iterations"]:
            continue
        for other in runs:
            same = all(other[k] == r[k] for k in ("model", "dtype", "eval_tokens"))
            if other is not r and same and 0 in other["iterations"]:
                r["iterations"][0] = other["iterations"][0]
                r["start_from"] = other["run"]
                break


def compare(paths: list[Path]) -> dict[str, Any]:
    runs = [load_run(Path(p)) for p in paths]
    _borrow_start(runs)
    for r in runs:
        last = max(r["iterations"], default=None)
        r["tests"] = {}
        if last is None or last == 0 or 0 not in r["iterations"]:
            continue
        for bench in BENCHES:
            a, b = r["iterations"][0].get(bench + "_outcomes"), r["iterations"][last].get(bench + "_outcomes")
            if not a or not b:
                continue
            ids = sorted(set(a) & set(b))
            worse = sum(a[i] and not b[i] for i in ids)
            better = sum(b[i] and not a[i] for i in ids)
            r["tests"][bench] = {"from": 0, "to": last, "prompts": len(ids), "better": better, "worse": worse,
                                 "p_value": round(mcnemar_exact(better, worse), 4)}
    return {"runs": runs, "head_to_head": head_to_head(runs)}


def head_to_head(runs: list[dict]) -> list[dict]:
    """Every pair of runs at every iteration after 0 that both have, on every benchmark where both
    kept per-prompt outcomes: the prompts (of those both answered) where the first run passes and
    the second fails, the reverse, and the exact McNemar p-value of the difference."""
    out = []
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            for t in sorted(set(a["iterations"]) & set(b["iterations"]) - {0}):
                for bench in BENCHES:
                    x, y = a["iterations"][t].get(bench + "_outcomes"), b["iterations"][t].get(bench + "_outcomes")
                    if not x or not y:
                        continue
                    ids = sorted(set(x) & set(y))
                    first = sum(x[k] and not y[k] for k in ids)
                    second = sum(y[k] and not x[k] for k in ids)
                    out.append({"a": a["run"], "b": b["run"], "iteration": t, "benchmark": bench, "prompts": len(ids),
                                "a_only": first, "b_only": second, "p_value": round(mcnemar_exact(first, second), 4)})
    return out


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "–"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def rows_of(result: dict) -> list[list[str]]:
    out = []
    for r in result["runs"]:
        for t, it in sorted(r["iterations"].items()):
            ife, held = it.get("ifeval") or {}, it.get("heldout") or {}
            avg = sum(ife[m] for m in METRICS) / 4 if ife else None
            borrowed = t == 0 and r.get("start_from")
            sp = r["spend"] if t == max(r["iterations"]) else None
            out.append([Path(r["run"]).name + (" (iter 0 of " + Path(borrowed).name + ")" if borrowed else ""), r["method"],
                        str(r["model"]), str(r["judge"]), str(t),
                        *[_fmt(ife.get(m)) for m in METRICS], _fmt(avg), _fmt(held.get("prompt_strict")),
                        _fmt(it.get("rows")), _fmt(it.get("pair_similarity"), 3), _fmt(it.get("independent_similarity"), 3),
                        (_fmt(sp["calls"]) if sp["recorded"] else "–") if sp else "",
                        (_fmt(sp["new_tokens"]) if sp["recorded"] else "–") if sp else "", _fmt(sp["seconds"], 0) if sp else ""])
    return out


HEAD = ["run", "method", "model", "judge", "iter", "IFEval P(S)", "I(S)", "P(L)", "I(L)", "avg", "held-out P(S)",
        "pairs / rows", "pair sim.", "indep. sim.", "calls", "new tokens", "seconds"]
TEST_HEAD = ["run", "benchmark", "iterations", "prompts", "better", "worse", "p (exact McNemar)"]


H2H_HEAD = ["run A", "run B", "iter", "benchmark", "prompts", "A passes, B fails", "B passes, A fails", "p (exact McNemar)"]


def h2h_of(result: dict) -> list[list[str]]:
    return [[Path(h["a"]).name, Path(h["b"]).name, str(h["iteration"]), h["benchmark"], str(h["prompts"]), str(h["a_only"]),
             str(h["b_only"]), f"{h['p_value']:.4f}"] for h in result.get("head_to_head", [])]


def tests_of(result: dict) -> list[list[str]]:
    return [[Path(r["run"]).name, bench, f"{t['from']} → {t['to']}", str(t["prompts"]), str(t["better"]), str(t["worse"]),
             f"{t['p_value']:.4f}"] for r in result["runs"] for bench, t in r["tests"].items()]


def _refiner_cells(it: dict) -> list[str]:
    def f(x) -> str:
        return "–" if x is None else str(x)

    lb, rf = it.get("llmbar") or {}, it.get("refine") or {}
    return [f(lb.get("accuracy")), f(lb.get("votes")), f(lb.get("unparseable")), f(rf.get("failed")), f(rf.get("greedy")),
            f(rf.get("search")), f(rf.get("similarity")), f(rf.get("checker_judge"))]


# Rendering (the markdown and HTML pages, the plot): checked by the CLI output tests, kept out of
# `make mutation`, whose scope is the figures, not their layout.
# pragma: no mutate start
def markdown(result: dict) -> str:
    def table(head, rows):
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(x) + " |" for x in rows])

    parts = [table(HEAD, rows_of(result))]
    tests = tests_of(result)
    parts.append("\nPrompt-level strict accuracy, last iteration against iteration 0, per prompt:\n\n"
                 + (table(TEST_HEAD, tests) if tests else "(no run has per-prompt outcomes of two iterations)"))
    h2h = h2h_of(result)
    if h2h:
        parts.append("\nHead to head, at each iteration both runs have, per prompt (prompt-level strict):\n\n"
                     + table(H2H_HEAD, h2h))
    refiner = [[Path(r["run"]).name, str(t), *_refiner_cells(it)] for r in result["runs"]
               for t, it in sorted(r["iterations"].items()) if "llmbar" in it or "refine" in it]
    if refiner:
        parts.append("\nThe refiner (the actor where a method has none): LLMBar overall accuracy at the most votes, and the "
                     "share of failed held-out answers its greedy refinement and its search make pass:\n\n"
                     + table(["refiner", "iter", "LLMBar acc.", "votes", "unparseable %", "failed answers", "greedy pass %",
                              "search pass %", "greedy similarity", "search judged by the checkers"], refiner))
    fbench = [[Path(r["run"]).name, str(t)] + ["–" if v is None else str(v) for v in it["followbench"].values()]
              for r in result["runs"] for t, it in sorted(r["iterations"].items()) if "followbench" in it]
    if fbench:
        parts.append("\nFollowBench (the actor; HSR and SSR are means over levels 1-5, on the items scored: 350 of 820 "
                     "without a judge):\n\n" + table(["run", "iter", "items", "HSR %", "SSR %", "CSL", "judge",
                                                       "judge replies unparsed"], fbench))
    parts.append("\nSpend (calls, new tokens, seconds) is the run's total; – where its manifest predates spend records.")
    return "\n".join(parts) + "\n"


def _plot(result: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, bench in zip(axes, BENCHES):
        for r in result["runs"]:
            pts = [(t, it[bench]["prompt_strict"]) for t, it in sorted(r["iterations"].items()) if bench in it]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=f"{Path(r['run']).name} ({r['method']})")
        ax.set_title(f"{bench}: prompt-level strict (%)")
        ax.set_xlabel("iteration")
    axes[0].legend(fontsize=7)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def html_page(result: dict) -> str:
    def table(head, rows):
        return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows) + "</table>")

    return ("<!doctype html><meta charset='utf-8'><title>spar compare</title><style>body{font-family:sans-serif;margin:2em}"
            "td,th{border:1px solid #ccc;padding:3px 6px}table{border-collapse:collapse;margin:1em 0}</style>"
            "<h1>spar compare</h1>" + table(HEAD, rows_of(result))
            + "<h2>Significance (exact McNemar, per prompt, last iteration vs iteration 0)</h2>" + table(TEST_HEAD, tests_of(result))
            + ("<h2>Head to head (exact McNemar, per prompt, at each iteration both runs have)</h2>"
               + table(H2H_HEAD, h2h_of(result)) if result.get("head_to_head") else "")
            + f"<img alt='accuracy per iteration' src='data:image/png;base64,{_plot(result)}'>")


# pragma: no mutate end
def strip(result: dict) -> dict:
    """The JSON for scripts: per-prompt outcomes left out (they stay in the runs)."""
    return {"runs": [{**r, "iterations": {t: {k: v for k, v in it.items() if not k.endswith("_outcomes")}
                                          for t, it in r["iterations"].items()}} for r in result["runs"]],
            "head_to_head": result.get("head_to_head", [])}
