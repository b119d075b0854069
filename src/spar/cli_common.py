"""What the command modules share: the settings' defaults, the common options, the error policy,
and building a backend."""

from __future__ import annotations

import functools
from typing import Annotated, Optional

import typer

from spar.io import DataError
from spar.settings import JudgeSettings, SearchSettings

# Every default below that a recipe also sets is read from the stage's settings class (spar.settings).
JUDGE, SEARCH = JudgeSettings(), SearchSettings()

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="model string (see `spar --help`)")]
DtypeOpt = Annotated[Optional[str], typer.Option(
    help="fp32, bf16 or fp16 for transformers models (default: bf16 on CUDA and on CPUs with native bf16, "
         "AVX512-BF16 or AMX; fp32 on other CPUs)")]


def friendly(fn):
    """A user's error (bad input, a bad setting, a backend that cannot answer) is one line on stderr
    and exit code 2; anything else is a bug and keeps its traceback (exit 1)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from pydantic import ValidationError

        from spar.llm import BackendError
        from spar.pipeline import StageFailed

        # the OS's refusals name their file: a directory where a file was meant, no permission, ...
        user = (DataError, BackendError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
        try:
            return fn(*args, **kwargs)
        except user as e:
            typer.echo(f"spar: error: {e}", err=True)
            raise typer.Exit(2) from None
        except ValidationError as e:  # settings built from options
            err = e.errors()[0]
            typer.echo(f"spar: error: {'.'.join(map(str, err['loc']))}: {err['msg']}", err=True)
            raise typer.Exit(2) from None
        except StageFailed as e:  # the traceback is in the manifest's stage entry; a bug shows it here too
            if not isinstance(e.error, user):
                import traceback

                traceback.print_exception(e.error)
            typer.echo(f"spar: {e}", err=True)
            raise typer.Exit(2 if isinstance(e.error, user) else 1) from None

    return wrapper


REMOTE = {"timeout": 120.0, "max_retries": 6}  # for openai: models; `spar --timeout S --retries N` sets them


def _backend(model: str, batch_size: int = 8, device: Optional[str] = None, dtype: Optional[str] = None):
    from spar.llm import BackendOptions, load_backend

    backend = load_backend(model, BackendOptions(batch_size=batch_size, device=device, dtype=dtype, **REMOTE))
    if hasattr(backend, "close"):  # an engine with processes of its own (vLLM): stopped before the interpreter goes
        import atexit

        atexit.register(backend.close)
    return backend

