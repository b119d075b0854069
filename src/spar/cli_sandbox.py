"""``spar sandbox``: see what isolation works here, and run one function of a file the way AutoIF
runs a model-written verifier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from spar.cli_common import friendly, IN

sandbox_app = typer.Typer(help="Run model-written code isolated: check the layers, try a verifier by hand.",
                          no_args_is_help=True)


@sandbox_app.command("check")
@friendly
def sandbox_check():
    """Which isolation layers work on this machine, each tried for real: the namespaces and mounts,
    then, through a warm worker, what a model-written call is stopped from doing (true = stopped);
    exit 0 either way."""
    from spar.sandbox import check, probe_calls

    layers = check()
    if layers.get("namespaces"):
        layers["calls"] = probe_calls()
    typer.echo(json.dumps(layers, indent=1))


@sandbox_app.command("run")
@friendly
def sandbox_run(
    file: Annotated[Path, typer.Argument(help="a Python file defining the function"), IN],
    call: Annotated[str, typer.Option("--call", help="the function to call")],
    input: Annotated[Optional[str], typer.Option("--input", help="its arguments as JSON: a list, or one value")] = None,
    timeout: Annotated[float, typer.Option(help="wall-clock seconds for the call")] = 5.0,
    unsafe_no_network_isolation: Annotated[bool, typer.Option("--unsafe-no-network-isolation",
                                                              help="run even where no namespace can be made (rlimits only)")] = False,
):
    """Run FILE's function CALL in the sandbox; print the result or the recorded failure as one JSON
    line (exit 0 either way; exit 2 for bad arguments)."""
    from dataclasses import asdict

    from spar.io import DataError
    from spar.sandbox import Limits, Pool

    if not file.is_file():
        raise DataError(f"{file}: no such file")
    try:
        code = file.read_text()
    except UnicodeDecodeError:
        raise DataError(f"{file}: not UTF-8 text") from None
    try:
        args = json.loads(input) if input is not None else []
    except json.JSONDecodeError as e:
        raise DataError(f"--input: not JSON ({e.msg})") from None
    if timeout <= 0:
        raise DataError("--timeout must be > 0")
    with Pool(workers=1, limits=Limits(wall_seconds=timeout, cpu_seconds=max(1, int(timeout))),
              unsafe_no_network_isolation=unsafe_no_network_isolation) as pool:
        (out,) = pool.run([(code, call, args if isinstance(args, list) else [args])])
    typer.echo(json.dumps(asdict(out)))
