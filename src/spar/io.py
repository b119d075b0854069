"""JSONL reading with strict validation, atomic writes, and crash-safe appends.

A bad row raises :class:`DataError` naming the file and line; the CLI turns it into a one-line
message and exit code 2. Outputs that are written in one go are atomic (temp file, fsync,
rename). Outputs that grow row by row (resumable stages) are appended and fsynced per row, so a
killed run loses at most the row in flight; :func:`resume` drops a torn last line.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from spar.types import Constraint, Message, Prompt

M = TypeVar("M", bound=BaseModel)


class DataError(ValueError):
    """Input that spar cannot use; the message names the file and line."""


def _short(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e["loc"]) or "row"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


def parse_json(text: str, where: str, whole_file: bool = False) -> Any:
    """``json.loads`` with its failures as DataError naming ``where`` (file:line): bad JSON, nesting
    too deep for the parser, an integer too long to convert, a lone surrogate that no UTF-8 output
    could hold."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}{f':{e.lineno}' if whole_file else ''}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deep") from None
    except ValueError as e:  # int_max_str_digits: a number of thousands of digits
        raise DataError(f"{where}: not usable JSON ({e})") from None
    if "\\u" in text:  # escapes can make a lone surrogate, which no UTF-8 file can hold
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{where}: a \\u escape makes a lone surrogate, not a character") from None
    return obj


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-empty line of a regular file; bad JSON, and a line
    longer than MAX_LINE, raise DataError."""
    path = Path(path)
    check_input(path, file=True)
    with path.open("rb") as f:
        lineno = 0
        while raw := f.readline(MAX_LINE + 1):
            lineno += 1
            if len(raw) > MAX_LINE:
                raise DataError(f"{path}:{lineno}: a line longer than {MAX_LINE >> 20} MiB; not a JSONL file")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: not UTF-8 text (byte {e.start + 1} of the line)") from None
            if not line.strip():
                continue
            obj = parse_json(line, f"{path}:{lineno}")
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def read_jsonl(path: str | Path, model: type[M]) -> list[M]:
    out = []
    for lineno, obj in iter_json_lines(path):
        try:
            out.append(model.model_validate(obj))
        except ValidationError as e:
            raise DataError(f"{path}:{lineno}: not a valid {model.__name__} row ({_short(e)})") from None
    return out


def prompt_from_row(obj: dict[str, Any]) -> Prompt:
    """Accept spar's prompt rows and IFEval's rows.

    spar: ``{"id", "prompt" | "messages", "constraints": [{"kind", "kwargs"}], ...}``
    IFEval: ``{"key", "prompt", "instruction_id_list", "kwargs"}``
    """
    if "instruction_id_list" in obj:  # IFEval
        ids, kwargs = obj["instruction_id_list"], obj.get("kwargs")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError("instruction_id_list must be a list of strings")
        kwargs = kwargs if kwargs is not None else [{}] * len(ids)
        if not isinstance(kwargs, list) or not all(kw is None or isinstance(kw, dict) for kw in kwargs):
            raise ValueError("kwargs must be a list of objects, one per instruction")
        if len(ids) != len(kwargs):
            raise ValueError("instruction_id_list and kwargs differ in length")
        constraints = [
            Constraint(kind=k, kwargs={a: b for a, b in (kw or {}).items() if b is not None}) for k, kw in zip(ids, kwargs)
        ]
        return Prompt(id=str(obj["key"]), messages=[Message(role="user", content=obj["prompt"])],
                      constraints=constraints, source="ifeval")
    if "messages" not in obj and "prompt" in obj:
        obj = dict(obj)
        text = obj.pop("prompt")
        if not isinstance(text, str):
            raise ValueError("'prompt' must be a string (use 'messages' for a chat)")
        obj["messages"] = [{"role": "user", "content": text}]
    if "id" not in obj:
        raise ValueError("missing 'id'")
    if not isinstance(obj["id"], (str, int)) or isinstance(obj["id"], bool) or obj["id"] == "":
        raise ValueError(f"'id' must be a non-empty string or an integer, got {json.dumps(obj['id'])}")
    obj = {**obj, "id": str(obj["id"])}
    return Prompt.model_validate(obj)


def read_json(path: str | Path) -> Any:
    """A whole JSON file (a manifest, scores, stats); a broken one is bad input naming its line."""
    path = Path(path)
    check_input(path, file=True)
    if path.stat().st_size > MAX_LINE:
        raise DataError(f"{path}: larger than {MAX_LINE >> 20} MiB; not a JSON file spar wrote")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start + 1})") from None
    return parse_json(text, str(path), whole_file=True)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """A run's manifest.json: an object whose ``stages`` maps each stage to an object; any other
    shape is bad input (a file spar did not write), named as such."""
    data = read_json(path)
    stages = data.get("stages") if isinstance(data, dict) else None
    if not isinstance(stages, dict) or not all(isinstance(v, dict) for v in stages.values()):
        raise DataError(f"{path}: not a spar manifest (an object whose 'stages' maps each stage to an object)")
    return data


def row_lines(path: str | Path) -> list[int]:
    """The line number of each row of a JSONL file (blank lines are not rows), for messages about
    rows that were read whole before they were checked."""
    return [lineno for lineno, _ in iter_json_lines(path)]


def read_prompts(path: str | Path) -> list[Prompt]:
    out, seen = [], {}
    for lineno, obj in iter_json_lines(path):
        try:
            p = prompt_from_row(obj)
        except (ValidationError, ValueError, KeyError, TypeError) as e:
            msg = _short(e) if isinstance(e, ValidationError) else str(e)
            raise DataError(f"{path}:{lineno}: not a valid prompt row ({msg})") from None
        if p.id in seen:
            raise DataError(f"{path}:{lineno}: duplicate id {p.id!r} (first at line {seen[p.id]})")
        seen[p.id] = lineno
        out.append(p)
    return out


def _dump(row: BaseModel | dict[str, Any]) -> str:
    if isinstance(row, BaseModel):
        return row.model_dump_json()
    return json.dumps(row, ensure_ascii=False)


def write_jsonl(path: str | Path, rows: Iterable[BaseModel | dict[str, Any]]) -> None:
    """Write all rows atomically: readers see the old file or the whole new one."""
    write_text(path, "".join(_dump(r) + "\n" for r in rows))


def write_text(path: str | Path, text: str) -> None:
    """Write a whole file atomically. A symlink is followed: its target is replaced, the link stays."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; the output gets the mode of the file it replaces, else what
        # the umask gives a new file (as open() would)
        st = _stat(path)
        if st is not None:
            mode = stat.S_IMODE(st.st_mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def resume(path: str | Path, model: type[M], key: str = "id") -> tuple[list[M], set[str]]:
    """Read the rows an earlier (possibly killed) run appended and the set of their keys.

    A torn last line (no newline: the process died mid-write) is cut off the file, but only when
    spar's own marker says that an append to it was interrupted (``Appender``); a file that spar
    did not leave half-written is never cut: a last line without a newline there is an error.
    """
    path = Path(path)
    if _stat(path) is None:
        return [], set()
    check_input(path, file=True)
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        if not marker(path).exists():
            line = data.count(b"\n") + 1
            raise DataError(f"{path}:{line}: the last line has no newline, and no interrupted spar run left this file; "
                            "spar will not cut a file it did not write (complete the line or move the file)")
        cut = data.rfind(b"\n") + 1
        with path.open("r+b") as f:
            f.truncate(cut)
    rows = read_jsonl(path, model)
    return rows, {str(getattr(r, key)) for r in rows}


def marker(path: Path) -> Path:
    """The file that says spar is appending to ``path`` (left behind when a run is killed)."""
    return path.with_name(f".{path.name}.appending")


class Appender:
    """Append rows to a JSONL file, each flushed and fsynced before the next is written. While it is
    open a marker file sits beside the output, so that a resume knows a torn last line is its own."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._created = not self.path.exists()
        self._written = 0
        marker(self.path).touch()
        self._f = self.path.open("a", encoding="utf-8")

    def write(self, row: BaseModel | dict[str, Any]) -> None:
        self._f.write(_dump(row) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self._written += 1

    def close(self) -> None:
        self._f.close()
        marker(self.path).unlink(missing_ok=True)

    def __enter__(self) -> "Appender":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close()
        if exc_type is not None and self._created and not self._written:  # failed before its first row
            self.path.unlink(missing_ok=True)


def refuse_same_path(input: str | Path, *outputs: str | Path | None) -> None:
    """Refuse, before anything is written, an output that is the input file: it would be destroyed."""
    src = Path(input).resolve()
    for out in outputs:
        if out is not None and Path(out).resolve() == src:
            raise DataError(f"{out}: the output is the input file; choose another path")


# --- paths, checked before any work ---------------------------------------------------------------
# Every command checks its paths first (spar.cli_common.friendly): a bad path is refused before a
# model loads or converts, an engine starts or a dataset is read.

MAX_LINE = 256 << 20  # bytes in one JSONL row at most: a longer "line" is an endless or foreign file


def _kind(mode: int) -> str | None:
    """What a file that is neither regular nor a directory is, in words."""
    for test, word in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return None


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None
    except OSError as e:  # a symlink loop, a name too long, a component that is a file
        raise DataError(f"{path}: {e.strerror or e}") from None


def check_input(path: str | Path, file: bool = False) -> None:
    """An input must exist and be a regular file (or a directory, unless ``file``): a FIFO would hang
    the reader and a device (/dev/zero) never ends."""
    path = Path(path)
    st = _stat(path)
    if st is None:
        raise DataError(f"{path}: no such file")
    kind = _kind(st.st_mode)
    if kind:
        raise DataError(f"{path}: {kind}, not a regular file")
    if file and stat.S_ISDIR(st.st_mode):
        raise DataError(f"{path}: a directory, not a file")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: no permission to read it")


def _writable_dir(path: Path, what: Path) -> None:
    """The nearest existing folder at or above ``path`` must be a folder that can be written."""
    probe = path
    while _stat(probe) is None and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise DataError(f"{what}: {probe} is not a directory")
    try:
        read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
    except OSError:  # pragma: no cover - a file system without statvfs
        read_only = False
    if read_only:
        raise DataError(f"{what}: {probe} is on a read-only file system")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DataError(f"{what}: no permission to write in {probe}")


def check_output(path: str | Path, inputs: Iterable[str | Path | None] = (), folder: bool = False) -> None:
    """An output (a file, or a folder with ``folder``) that can be written where it is named, is not
    a directory where a file is meant (or the reverse), is no FIFO or device, and is none of the
    inputs. A symlink is followed: its target is what gets written."""
    path = Path(path)
    st = _stat(path)
    if st is not None:
        kind = _kind(st.st_mode)
        if kind:
            raise DataError(f"{path}: {kind}, not a regular file")
        if folder and not stat.S_ISDIR(st.st_mode):
            raise DataError(f"{path}: a file, not a directory")
        if not folder and stat.S_ISDIR(st.st_mode):
            raise DataError(f"{path}: a directory, not a file")
    _writable_dir(path if folder and st is not None else path.parent, path)
    for src in inputs:
        if src is None or _stat(Path(src)) is None:
            continue
        if Path(src).resolve() == path.resolve() or (st is not None and os.path.samefile(src, path)):
            raise DataError(f"{path}: the output is the input file; choose another path")


# the names a run writes at the top of its directory (spar.pipeline): where they exist without the
# run's manifest beside them, they are someone else's files, which a run would overwrite
RUN_NAMES = ("config.yaml", "report.html", "prompts.jsonl", "heldout.jsonl")


def check_run_dir(path: str | Path) -> None:
    """A run directory is never the current directory or one above it, and no file a run writes may
    already be there unless a run wrote it (its manifest.json is beside it)."""
    path = Path(path)
    check_output(path, folder=True)
    here, target = Path.cwd().resolve(), path.resolve()
    if target == here or target in here.parents:
        raise DataError(f"{path}: the run directory would be {target}, the current directory or one above it; "
                        "name a folder of its own (--run-dir)")
    if path.is_dir() and not (path / "manifest.json").is_file():
        theirs = [n for n in RUN_NAMES if _stat(path / n) is not None] + sorted(p.name for p in path.glob("iter_*"))[:1]
        if theirs:
            raise DataError(f"{path}: holds {theirs[0]}, which no spar run wrote here (no manifest.json) and a run "
                            "would overwrite; choose a new or empty folder")
