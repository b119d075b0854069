"""What the command modules share: the settings' defaults, the common options, the error policy,
and building a backend."""

from __future__ import annotations

import contextvars
import errno
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional, get_type_hints

import typer

from spar.io import DataError
from spar.settings import JudgeSettings, SearchSettings

# Every default below that a recipe also sets is read from the stage's settings class (spar.settings).
JUDGE, SEARCH = JudgeSettings(), SearchSettings()

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="model string (see `spar --help`)")]
DtypeOpt = Annotated[Optional[str], typer.Option(
    help="fp32, bf16 or fp16 for transformers models (default: bf16 on CUDA and on CPUs with native bf16, "
         "AVX512-BF16 or AMX; fp32 on other CPUs)")]


@dataclass(frozen=True)
class PathRole:
    """What a path option is to its command, declared beside it (``Annotated[Path, typer.Option(...), IN]``)
    so that ``friendly`` checks every path before the command does any work."""

    kind: str  # in | out (a file) | out_dir (a folder) | run_dir


IN, OUT, OUT_DIR, RUN_DIR = PathRole("in"), PathRole("out"), PathRole("out_dir"), PathRole("run_dir")


def _shipped(value):
    """Typer callback of a --config option: a shipped recipe's name becomes its file (spar.config.shipped)."""
    from spar.config import shipped

    return shipped(value)


@functools.cache
def _path_roles(fn) -> dict[str, PathRole]:
    hints = get_type_hints(fn, include_extras=True)
    return {name: m for name, h in hints.items() for m in getattr(h, "__metadata__", ()) if isinstance(m, PathRole)}


def check_paths(fn, kwargs: dict) -> None:
    """Every path a command declares, checked before it loads a model, starts an engine or reads a
    dataset (spar.io.check_input / check_output / check_run_dir): inputs first, then outputs, none of
    which may be an input."""
    from spar.io import check_input, check_output, check_run_dir

    roles = _path_roles(fn)

    def values(kind: str) -> list[Path]:
        out = []
        for name, role in roles.items():
            v = kwargs.get(name)
            if role.kind == kind and v is not None:
                out.extend(v if isinstance(v, list) else [v])
        return out

    inputs = values("in")
    for p in inputs:
        check_input(p)
    for p in values("out"):
        check_output(p, inputs)
    for p in values("out_dir"):
        check_output(p, inputs, folder=True)
    for p in values("run_dir"):
        check_run_dir(p)


# The OS's refusals that are the user's to fix, each naming its file: a full disk, a read-only file
# system, a symlink loop, a name too long, a quota.
USER_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.ELOOP, errno.ENAMETOOLONG, errno.EDQUOT, errno.EACCES, errno.EPERM,
               errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EEXIST}


def user_error(e: BaseException) -> bool:
    """Whether an error is the user's to fix (one line, exit 2) rather than a bug (a traceback)."""
    from spar.llm import BackendError

    return isinstance(e, (DataError, BackendError)) or (isinstance(e, OSError) and e.errno in USER_ERRNOS)


def describe_error(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def friendly(fn):
    """A user's error (bad input, a bad setting, a backend that cannot answer) is one line on stderr
    and exit code 2; anything else is a bug and keeps its traceback (exit 1). The command's declared
    paths are checked first (``check_paths``)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from pydantic import ValidationError

        from spar.pipeline import StageFailed

        try:
            check_paths(fn, kwargs)
            return fn(*args, **kwargs)
        except ValidationError as e:  # settings built from options
            err = e.errors()[0]
            typer.echo(f"spar: error: {'.'.join(map(str, err['loc']))}: {err['msg']}", err=True)
            raise typer.Exit(2) from None
        except StageFailed as e:  # the traceback is in the manifest's stage entry; a bug shows it here too
            if not user_error(e.error):
                import traceback

                traceback.print_exception(e.error)
            typer.echo(f"spar: {e}", err=True)
            raise typer.Exit(2 if user_error(e.error) else 1) from None
        except Exception as e:
            if not user_error(e):
                raise
            typer.echo(f"spar: error: {describe_error(e)}", err=True)
            raise typer.Exit(2) from None

    return wrapper


# What `spar --timeout/--retries` gave (spar.settings.RemoteSettings), set by the root command for the
# one command it runs: only what the user gave, so a recipe's own values stand where the command
# line is silent. (typer carries its own copy of click, whose context is not reachable from here.)
REMOTE_GIVEN: contextvars.ContextVar[dict] = contextvars.ContextVar("remote_given", default={})


def remote_given() -> dict:
    return dict(REMOTE_GIVEN.get())


class LazyBackend:
    """A backend built on its first use: the model string, device and dtype are checked at once
    (spar.llm.check_model), but the model loads (and a packaged one converts) only when the command
    first asks it for something, after it has read and checked its inputs."""

    def __init__(self, build):
        self._build, self._inner = build, None

    def _get(self):
        if self._inner is None:
            self._inner = self._build()
        return self._inner

    def __getattr__(self, attr: str):
        return getattr(self._get(), attr)

    def close(self) -> None:
        if self._inner is not None and hasattr(self._inner, "close"):
            self._inner.close()


def _backend(model: str, batch_size: int = 8, device: Optional[str] = None, dtype: Optional[str] = None,
             max_new_tokens: Optional[int] = None):
    from spar.llm import BackendOptions, check_model, load_backend
    from spar.settings import RemoteSettings

    remote = RemoteSettings(**remote_given())
    options = BackendOptions(batch_size=batch_size, device=device, dtype=dtype, timeout=remote.timeout,
                             max_retries=remote.retries)
    check_model(model, options, max_new_tokens)
    backend = LazyBackend(lambda: load_backend(model, options))
    import atexit

    atexit.register(backend.close)  # an engine with processes of its own (vLLM): stopped before the interpreter goes
    return backend


def _overrides(values: Optional[list[str]]) -> dict:
    import yaml

    out = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise DataError(f"--set takes KEY=VALUE (e.g. search.budget=6), got {item!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise DataError(f"--set {key}: {raw!r} is not a YAML value ({getattr(e, 'problem', e)})") from None
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        out[key] = value
    return out
