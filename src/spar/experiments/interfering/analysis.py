"""The interfering-factors experiment's test of the claim, summary, plots and report."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import Any

from spar.experiments.interfering.running import score
from spar.experiments.interfering.tasks import FACTOR, KINDS, InterferingSettings

# -- the test of the claim ---------------------------------------------------------------------------

def _cells(points: list[dict], task: str, endpoint: str) -> dict[tuple[str, int], list[float]]:
    """Per (arm, seed): the per-prompt value of the endpoint ("final": the share of passing samples at
    the last step; "auc": its trapezoid mean over [0, last step], the base model at 0)."""
    base = next((p for p in points if p["task"] == task and p["kind"] == "base"), None)
    runs: dict[tuple[str, int], dict[int, dict]] = {}
    for p in points:
        if p["task"] == task and p["kind"] in KINDS:
            runs.setdefault((p["kind"], p["seed"]), {})[p["step"]] = p
    out = {}
    for key, by_step in runs.items():
        if not any(p.get("last") for p in by_step.values()):
            continue
        steps = sorted(by_step)
        share = {st: [k / len(r) for k, r in zip(by_step[st]["passes"], by_step[st]["responses"])] for st in steps}
        if endpoint == "final":
            out[key] = share[steps[-1]]
        else:
            if base is None:
                continue
            share[0] = [k / len(r) for k, r in zip(base["passes"], base["responses"])]
            xs = sorted(share)
            area = [sum((xs[i + 1] - xs[i]) * (share[xs[i]][j] + share[xs[i + 1]][j]) / 2 for i in range(len(xs) - 1))
                    for j in range(len(share[xs[0]]))]
            out[key] = [a / (xs[-1] - xs[0]) for a in area]
    return out


def arm_test(points: list[dict], task: str, endpoint: str = "final", permutations: int = 20000,
             seed: int = 0) -> dict[str, Any] | None:
    """Refined minus interfering on ``endpoint`` over the (seed, prompt) cells both arms finished: the
    mean difference, a 95% percentile bootstrap interval over cells, a two-sided sign-flip permutation
    p over cells (add-one), and the exact two-sided sign-flip p over seed means. None before any seed
    finished in both arms."""
    cells = _cells(points, task, endpoint)
    seeds = sorted({sd for (k, sd) in cells if ("refined", sd) in cells and ("interfering", sd) in cells})
    if not seeds:
        return None
    diffs = [a - b for sd in seeds for a, b in zip(cells[("refined", sd)], cells[("interfering", sd)])]
    rng = random.Random(seed)
    n, mean = len(diffs), statistics.fmean(diffs)
    boots = sorted(statistics.fmean(rng.choices(diffs, k=n)) for _ in range(min(permutations, 10000)))
    lo, hi = boots[int(0.025 * len(boots))], boots[int(0.975 * len(boots)) - 1]
    extreme = sum(abs(sum(d if rng.random() < 0.5 else -d for d in diffs)) / n >= abs(mean) - 1e-12
                  for _ in range(permutations))
    per_seed = [statistics.fmean(a - b for a, b in zip(cells[("refined", sd)], cells[("interfering", sd)])) for sd in seeds]
    m = statistics.fmean(per_seed)
    flips = [[(1 if (mask >> i) & 1 else -1) * d for i, d in enumerate(per_seed)] for mask in range(2 ** len(per_seed))]
    seed_p = sum(abs(statistics.fmean(f)) >= abs(m) - 1e-12 for f in flips) / len(flips)
    return {"endpoint": endpoint, "seeds": seeds, "cells": n, "refined": round(statistics.fmean(
        x for sd in seeds for x in cells[("refined", sd)]), 4), "interfering": round(statistics.fmean(
            x for sd in seeds for x in cells[("interfering", sd)]), 4), "difference": round(mean, 4),
        "ci95": [round(lo, 4), round(hi, 4)], "p": round((extreme + 1) / (permutations + 1), 5),
        "seed_means": [round(x, 4) for x in per_seed], "p_seeds": round(seed_p, 5)}


def summary(points: list[dict]) -> dict[str, Any]:
    """Mean and standard deviation over seeds, per (task, pair type, step); the base model per task."""
    out: dict[str, Any] = {}
    for p in points:
        t = out.setdefault(p["task"], {"base": None, "refined": {}, "interfering": {}})
        if p["kind"] == "base":
            t["base"] = {m: p[m] for m in ("accuracy", "factor", "framed", "sentences") if m in p}
        else:
            t[p["kind"]].setdefault(p["step"], []).append(p)
    for t in out.values():
        for kind in KINDS:
            t[kind] = {step: {m: {"mean": round(statistics.fmean(x[m] for x in ps), 4),
                                  "sd": round(statistics.stdev([x[m] for x in ps]) if len(ps) > 1 else 0.0, 4),
                                  "n": len(ps)}
                              for m in ("accuracy", "factor", "framed", "sentences") if m in ps[0]}
                       for step, ps in sorted(t[kind].items())}
    return out


def _interval(points: list[dict], task: str, kind: str, step: int, metric: str) -> tuple[float, float]:
    """A 95% percentile bootstrap interval of the mean over seeds at ``step`` (for the shaded bands)."""
    xs = [p[metric] for p in points if p["task"] == task and p["kind"] == kind and p["step"] == step]
    if len(xs) < 2:
        return (xs[0], xs[0]) if xs else (0.0, 0.0)
    rng = random.Random(f"{task}{kind}{step}{metric}")
    boots = sorted(statistics.fmean(rng.choices(xs, k=len(xs))) for _ in range(2000))
    return boots[50], boots[1949]


def plot(summ: dict, points: list[dict], task: str, path: Path) -> None:
    """Accuracy and interfering factor against steps, both pair types (mean over seeds, a shaded 95%
    bootstrap interval over seeds), the base model as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = summ[task]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric, title in zip(axes, ("accuracy", "factor"), ("task accuracy", FACTOR[task])):
        if t["base"] is not None:
            ax.axhline(t["base"][metric], color="grey", linestyle="--", label="base model")
        for kind, colour in zip(KINDS, ("tab:blue", "tab:red")):
            steps = sorted(t[kind])
            if t["base"] is not None:
                xs, mean, band = [0] + steps, [t["base"][metric]], [(t["base"][metric],) * 2]
            else:
                xs, mean, band = steps, [], []
            mean += [t[kind][k][metric]["mean"] for k in steps]
            band += [_interval(points, task, kind, k, metric) for k in steps]
            ax.plot(xs, mean, marker="o", color=colour, label=f"{kind} pairs")
            ax.fill_between(xs, [b[0] for b in band], [b[1] for b in band], color=colour, alpha=0.15)
        ax.set_title(f"{task}: {title}")
        ax.set_xlabel("DPO steps")
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def rescore(out_dir: Path, points: list[dict]) -> list[dict]:
    """Accuracy and factor from the stored responses by the current checkers (so a corrected checker
    rescores a finished run without training again)."""
    items = {t: json.loads((out_dir / f"{t}.items.json").read_text())["heldout"] for t in {p["task"] for p in points}}
    out = []
    for p in points:
        responses = p["responses"]
        if responses and isinstance(responses[0], str):  # the first version kept one greedy answer per prompt
            responses = [[r] for r in responses]
        out.append({**p, **score(p["task"], items[p["task"]], responses)})
    return out


def write_outputs(out_dir: Path, points: list[dict], s: InterferingSettings) -> dict[str, Any]:
    """summary.json (means, the tests), one PNG per task and report.html in ``out_dir``."""
    import base64
    import html

    from spar.io import write_jsonl

    points = rescore(out_dir, points)
    # the points file keeps the figures the summary is made of: a corrected checker rewrites both
    write_jsonl(out_dir / "points.jsonl", points)
    summ = summary(points)
    for task in summ:
        summ[task]["tests"] = {e: arm_test(points, task, e, s.permutations) for e in ("final", "auc")}
    chosen = json.loads((out_dir / "settings.json").read_text()).get("chosen_lr", {}) \
        if (out_dir / "settings.json").exists() else {}
    for task, lr in chosen.items():
        if task in summ:
            summ[task]["learning_rate"] = lr
    (out_dir / "summary.json").write_text(json.dumps(summ, indent=1) + "\n")
    parts = ["<!doctype html><meta charset='utf-8'><title>interfering factors</title>"
             "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}td,th{border:1px solid #ccc;padding:3px 8px}"
             "table{border-collapse:collapse}</style><h1>Refined vs interfering pairs</h1>",
             f"<p>DPO{' + ' + str(s.sft_weight) + ' x SFT on chosen' if s.sft_weight else ''} from the same start "
             f"({'LoRA r' + str(s.lora_r) if s.lora else 'full fine-tuning'}), {s.steps} steps of batch {s.batch_size}, "
             f"beta {s.beta}, seeds {s.seeds}; {s.train} training pairs and {s.heldout} held-out prompts per task; "
             f"{s.samples} sampled answers (temperature {s.temperature}) per held-out prompt every {s.eval_every} steps. "
             f"Bands: 95% bootstrap intervals over seeds.</p><p>Primary endpoint: {html.escape(s.primary_endpoint)}</p>"]
    for task in summ:
        png = out_dir / f"{task}.png"
        plot(summ, points, task, png)
        t = summ[task]
        last = max(t["refined"], default=None)
        parts.append(f"<h2>{task}</h2><p>learning rate {t.get('learning_rate', s.learning_rate)}</p>"
                     f"<img alt='{task}' src='data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}'>")
        if last is None:
            continue
        parts.append("<table><tr><th></th><th>accuracy</th><th>" + html.escape(FACTOR[task]) + "</th></tr>"
                     + (f"<tr><td>base</td><td>{t['base']['accuracy']:.3f}</td><td>{t['base']['factor']:.3f}</td></tr>"
                        if t["base"] else "")
                     + "".join(f"<tr><td>{kind}, step {last} (n={t[kind][last]['accuracy']['n']})</td>"
                               f"<td>{t[kind][last]['accuracy']['mean']:.3f} ± {t[kind][last]['accuracy']['sd']:.3f}</td>"
                               f"<td>{t[kind][last]['factor']['mean']:.3f} ± {t[kind][last]['factor']['sd']:.3f}</td></tr>"
                               for kind in KINDS if last in t[kind]) + "</table>")
        for e, r in t["tests"].items():
            if r:
                parts.append(f"<p>{e}: refined − interfering {r['difference']:+.3f} (95% CI {r['ci95'][0]:+.3f} to "
                             f"{r['ci95'][1]:+.3f}), p = {r['p']:.4f} over {r['cells']} cells; over seed means p = "
                             f"{r['p_seeds']:.4f} ({len(r['seeds'])} seeds)</p>")
    (out_dir / "report.html").write_text("\n".join(parts))
    return summ
