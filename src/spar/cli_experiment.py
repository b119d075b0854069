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
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder: points.jsonl, summary.json, <task>.png, report.html"), OUT_DIR] = Path("results/interfering"),
    model: Annotated[str, typer.Option("--model", "-m", help="the start of every run")] = "embedded",
    tasks: Annotated[str, typer.Option(help="letters, story, or both (comma-separated)")] = "letters,story",
    seeds: Annotated[str, typer.Option(help="comma-separated training seeds")] = "0,1,2",
    steps: Annotated[Optional[int], typer.Option(min=1, help="DPO steps per run (default 30)")] = None,
    eval_every: Annotated[Optional[int], typer.Option(min=1, help="evaluate every this many steps (default 10)")] = None,
    train: Annotated[Optional[int], typer.Option(min=1, help="training pairs per task (default 32)")] = None,
    heldout: Annotated[Optional[int], typer.Option(min=1, help="held-out prompts per task (default 16)")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="DPO learning rate (default 1e-5)")] = None,
):
    """DPO on refined pairs (chosen = the rejected answer, fixed) against interfering pairs (chosen also
    right, but different in another way), same start, steps, lr, beta and seeds; accuracy and the
    interfering factor on held-out prompts during training. Resumable. The defaults take about half an
    hour on a 2-core CPU; for a larger run raise --train, --heldout, --steps and --seeds."""
    from spar.experiments.interfering import TASKS, InterferingSettings, run, write_outputs
    from spar.io import DataError

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names or any(t not in TASKS for t in names):
        raise DataError(f"--tasks takes {', '.join(TASKS)} (comma-separated), got {tasks!r}")
    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        raise DataError(f"--seeds takes comma-separated integers, got {seeds!r}") from None
    given = {"steps": steps, "eval_every": eval_every, "train": train, "heldout": heldout, "learning_rate": learning_rate}
    s = InterferingSettings(tasks=names, seeds=seed_list, **{k: v for k, v in given.items() if v is not None})
    points = run(out, s, model)
    summ = write_outputs(out, points, s)
    for task, t in summ.items():
        last = max(t["refined"], default=None)
        if last is None:
            continue
        typer.echo(f"{task}: base accuracy {t['base']['accuracy']:.3f}, factor {t['base']['factor']:.3f}; step {last}: "
                   + "; ".join(f"{k} accuracy {t[k][last]['accuracy']['mean']:.3f} ± {t[k][last]['accuracy']['sd']:.3f}, "
                               f"factor {t[k][last]['factor']['mean']:.3f}" for k in ("refined", "interfering") if last in t[k]))
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
