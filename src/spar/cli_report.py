"""`spar compare` and `spar report`: runs side by side, and a run's HTML report (registered on the
main app by ``spar.cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from spar.cli_common import IN, OUT, friendly


@friendly
def compare(
    runs: Annotated[list[Path], typer.Argument(help="run directories (SPaR and other methods, or one method's settings)"), IN],
    html: Annotated[Optional[Path], typer.Option("--html", help="also write an HTML page with a plot per benchmark"), OUT] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of Markdown")] = False,
):
    """Runs side by side: IFEval and held-out scores per iteration, pairs, spend, and exact McNemar
    tests on the per-prompt outcomes: each run's last iteration against its iteration 0, and every
    two runs head to head at each iteration both have."""
    import json

    from spar.compare import compare as run_compare
    from spar.compare import html_page, markdown, strip
    from spar.io import write_text

    result = run_compare(runs)
    typer.echo(json.dumps(strip(result), indent=1) if json_out else markdown(result))
    if html:
        write_text(html, html_page(result))


@friendly
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory"), IN]):
    """(Re)write RUN_DIR/report.html from the run's files."""
    from spar.report import write_report

    typer.echo(str(write_report(run_dir)))
