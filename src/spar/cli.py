"""The ``spar`` command line. Thin: parse, build, run, save. Heavy imports live inside commands
so that ``spar --help`` answers at once."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    help="spar: self-play with tree-search refinement for instruction following (SPaR), and its baselines.\n\n"
    "Model strings: 'embedded' (SmolLM2-135M-Instruct, offline), a local path or HF id (transformers), "
    "'openai:<base_url>#<model>' (any OpenAI-compatible server), 'vllm:<path>' (GPU).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="model string (see `spar --help`)")]


def friendly(fn):
    """Turn expected failures into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from spar.io import DataError
        from spar.llm import BackendError

        try:
            return fn(*args, **kwargs)
        except (DataError, BackendError, ValueError, FileNotFoundError) as e:
            typer.echo(f"spar: error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _backend(model: str, batch_size: int = 8, device: Optional[str] = None, dtype: Optional[str] = None):
    from spar.llm import BackendOptions, load_backend

    return load_backend(model, BackendOptions(batch_size=batch_size, device=device, dtype=dtype))


def builtin_prompts():
    from importlib.resources import files

    from spar.io import read_prompts

    return read_prompts(files("spar") / "data" / "examples.jsonl")


@app.command()
@friendly
def generate(
    model: ModelOpt = "embedded",
    input: Annotated[Optional[Path], typer.Option("--input", "-i", help="prompts JSONL (spar or IFEval rows); default: spar's built-in examples")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="output JSONL: {id, prompt, completions}; rerun resumes")] = Path("completions.jsonl"),
    n: Annotated[int, typer.Option("-n", help="completions per prompt")] = 1,
    max_new_tokens: Annotated[int, typer.Option(help="tokens to generate at most")] = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.0,
    top_p: Annotated[float, typer.Option(help="nucleus sampling mass")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="requests per forward pass (hf backend)")] = 8,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    stop: Annotated[Optional[list[str]], typer.Option(help="stop string (repeatable)")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available)")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="fp32, bf16, fp16 (default: bf16 on cuda, fp32 on cpu)")] = None,
):
    """Generate completions for a prompts file. Resumable: rerunning skips ids already in OUTPUT."""
    from spar.generate import generate_file
    from spar.io import read_prompts
    from spar.llm import Sampling

    prompts = read_prompts(input) if input else builtin_prompts()
    sampling = Sampling(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                        stop=tuple(stop or ()), seed=seed)
    backend = _backend(model, batch_size, device, dtype)
    rows = generate_file(backend, prompts, output, sampling, chunk=batch_size)
    typer.echo(f"wrote {len(rows)} rows to {output}", err=True)
    return rows


@app.command()
@friendly
def serve(
    model: ModelOpt = "embedded",
    host: Annotated[str, typer.Option(help="address to bind (keep 127.0.0.1 unless you mean to share it)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    batch_size: Annotated[int, typer.Option(help="requests per forward pass (hf backend)")] = 8,
    max_tokens: Annotated[int, typer.Option(help="default max_tokens when a request gives none")] = 512,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ...")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="fp32, bf16, fp16")] = None,
):
    """Serve a model over an OpenAI-compatible API (/v1/models, /v1/chat/completions)."""
    import uvicorn

    from spar.serve import build_app

    backend = _backend(model, batch_size, device, dtype)
    typer.echo(f"spar serve: {model} on http://{host}:{port}/v1  (use it as openai:http://{host}:{port}/v1#{model})", err=True)
    uvicorn.run(build_app(backend, model, max_tokens), host=host, port=port, log_level="warning")


@app.command()
@friendly
def demo(
    run_dir: Annotated[Path, typer.Option(help="where the run's files go")] = Path("runs/demo"),
):
    """The main job on the embedded model, offline: generate answers to spar's built-in prompts."""
    from rich.console import Console
    from rich.table import Table

    from spar.generate import generate_file
    from spar.llm import Sampling

    rows = generate_file(_backend("embedded"), builtin_prompts(), run_dir / "completions.jsonl",
                         Sampling(max_new_tokens=128))
    table = Table(title="embedded model (SmolLM2-135M-Instruct), greedy", show_lines=True)
    table.add_column("prompt", max_width=40)
    table.add_column("completion")
    for r in rows:
        table.add_row(r.prompt[-1].content, r.completions[0])
    Console().print(table)


def main() -> None:  # pragma: no cover
    sys.exit(app())
