"""``spar experiment``: controlled experiments that a small model can run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from spar.cli_common import friendly, IN, OUT_DIR

experiment_app = typer.Typer(help="Controlled experiments: the interfering-factors test of SPaR's paper.", no_args_is_help=True)


@experiment_app.command("interfering")
@friendly
def interfering(
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder: settings.json, pilot.jsonl, points.jsonl, summary.json, <task>.png, report.html"), OUT_DIR] = Path("results/interfering"),
    model: Annotated[str, typer.Option("--model", "-m", help="the start of every run")] = "embedded",
    tasks: Annotated[str, typer.Option(help="letters, story, ending (comma-separated, run in this order)")] = "letters,story,ending",
    seeds: Annotated[str, typer.Option(help="comma-separated training seeds")] = "0,1,2,3,4",
    steps: Annotated[Optional[int], typer.Option(min=1, help="DPO steps per run (default 200)")] = None,
    eval_every: Annotated[Optional[int], typer.Option(min=1, help="evaluate every this many steps (default 50)")] = None,
    train: Annotated[Optional[int], typer.Option(min=2, help="training pairs per task (default 256)")] = None,
    heldout: Annotated[Optional[int], typer.Option(min=1, help="held-out prompts per task (default 16)")] = None,
    samples: Annotated[Optional[int], typer.Option(min=1, help="sampled answers per held-out prompt per evaluation (default 4)")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="one DPO learning rate for every task (default: each task's pilot picks)")] = None,
    pilot_rates: Annotated[Optional[str], typer.Option(help="comma-separated rates the pilot tries (default 3e-5,1e-4,3e-4)")] = None,
    pilot_steps: Annotated[Optional[int], typer.Option(min=1, help="DPO steps per pilot run (default 30)")] = None,
    full: Annotated[bool, typer.Option("--full", help="full fine-tuning instead of LoRA r16")] = False,
):
    """DPO on refined pairs (chosen = the rejected answer, fixed) against interfering pairs (chosen also
    right, but different in another way), same start, steps, learning rate, beta and seeds; accuracy
    and the interfering factor on held-out prompts (sampled answers) during training, and a
    permutation test of refined against interfering accuracy (the primary endpoint is written into
    settings.json before the first run). Resumable: rerun the same command to continue. The defaults
    are a study of hours on a 2-core CPU (3 tasks x 2 pair types x 5 seeds x 200 steps, and a pilot);
    for a first look try --tasks letters --seeds 0,1 --steps 40 --eval-every 20 --learning-rate 1e-4."""
    from spar.experiments.interfering import TASKS, InterferingSettings, run, write_outputs
    from spar.io import DataError

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names or any(t not in TASKS for t in names):
        raise DataError(f"--tasks takes {', '.join(TASKS)} (comma-separated), got {tasks!r}")
    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
        rates = [float(x) for x in pilot_rates.split(",") if x.strip()] if pilot_rates is not None else None
    except ValueError:
        raise DataError(f"--seeds takes comma-separated integers and --pilot-rates numbers, got {seeds!r} and {pilot_rates!r}") from None
    if not seed_list or (rates is not None and (not rates or min(rates) <= 0)):
        raise DataError("--seeds needs at least one seed and --pilot-rates at least one rate, each above 0")
    given = {"steps": steps, "eval_every": eval_every, "train": train, "heldout": heldout, "samples": samples,
             "learning_rate": learning_rate, "pilot_rates": rates, "pilot_steps": pilot_steps}
    s = InterferingSettings(tasks=names, seeds=seed_list, lora=not full, **{k: v for k, v in given.items() if v is not None})
    points = run(out, s, model)
    summ = write_outputs(out, points, s)
    for task, t in summ.items():
        last = max(t["refined"], default=None)
        if last is None:
            continue
        typer.echo(f"{task}: base accuracy {t['base']['accuracy']:.3f}, factor {t['base']['factor']:.3f}; step {last}: "
                   + "; ".join(f"{k} accuracy {t[k][last]['accuracy']['mean']:.3f} ± {t[k][last]['accuracy']['sd']:.3f}, "
                               f"factor {t[k][last]['factor']['mean']:.3f}" for k in ("refined", "interfering") if last in t[k]))
        r = t["tests"]["final"]
        if r:
            typer.echo(f"  refined - interfering {r['difference']:+.3f} (95% CI {r['ci95'][0]:+.3f} to {r['ci95'][1]:+.3f}), "
                       f"p = {r['p']:.4f} over {r['cells']} (seed, prompt) cells; p = {r['p_seeds']:.4f} over seed means")
    typer.echo(f"report: {out / 'report.html'}")


@experiment_app.command("lr-sweep")
@friendly
def lr_sweep(
    pairs: Annotated[Path, typer.Option(help="DPO pairs JSONL (e.g. a run's iter_1/dpo.jsonl)"), IN],
    heldout: Annotated[Path, typer.Option(help="held-out prompts with checkable constraints (e.g. a run's heldout.jsonl)"), IN],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder: base/, lr-<value>/, summary.json"), OUT_DIR] = Path("results/lr-sweep"),
    model: Annotated[str, typer.Option("--model", "-m", help="the start of every run")] = "embedded",
    lrs: Annotated[str, typer.Option(help="comma-separated learning rates")] = "1e-6,1e-5,5e-5",
    epochs: Annotated[float, typer.Option(min=0.01, help="epochs over the pairs")] = 1.0,
    seed: Annotated[int, typer.Option(help="training seed")] = 0,
):
    """The same pairs trained at several learning rates from the same start; each model's held-out
    pass rate beside signs of movement (answers changed, similarity to the base's) and of collapse
    (length, distinct bigrams, empty and looping answers). Resumable by learning rate."""
    from rich.console import Console
    from rich.table import Table

    from spar.experiments.lr_sweep import SweepSettings, run
    from spar.io import DataError

    try:
        rates = [float(x) for x in lrs.split(",") if x.strip()]
    except ValueError:
        raise DataError(f"--lrs takes comma-separated numbers, got {lrs!r}") from None
    if not rates or min(rates) <= 0:
        raise DataError("--lrs needs at least one learning rate, each above 0")
    points = run(out, pairs, heldout, model, SweepSettings(learning_rates=rates, epochs=epochs, seed=seed))
    table = Table(title=f"Learning-rate sweep ({pairs})")
    cols = ("learning_rate", "prompt_strict", "inst_strict", "changed", "mean_similarity_to_base", "mean_words",
            "distinct_2", "looping", "empty", "last_loss", "last_margin")
    for c in cols:
        table.add_column(c.replace("_", " "), justify="right")
    for p in points:
        table.add_row(*("base" if c == "learning_rate" and p[c] is None else ("" if p.get(c) is None else f"{p[c]:g}")
                        for c in cols))
    Console().print(table)
    import json

    typer.echo(json.dumps(points))
