"""Running code that a model wrote (AutoIF's verifiers) outside the spar process.

A :class:`Pool` keeps warm workers (``spar/sandbox_worker.py``), each a child process in its own
session, started through ``unshare`` in new user, network, pid and mount namespaces: no network
(a fresh network namespace has only a loopback that is down), no view of other processes, private
tmpfs over /tmp and the other world-writable directories, the home directory hidden (but for what
Python itself needs, read-only) and every other mount read-only: nothing written reaches the host's
files or survives the worker. The worker runs every
call in a fresh forked child under rlimits (CPU seconds, address space, processes, open files,
bytes written) with a wall-clock limit, an empty environment, stdin closed, and reads back one
JSON result from a pipe -- data only, never anything to import or evaluate.

A worker that dies or stops answering is killed as a group and replaced; the call it was running
is recorded as failed and the other calls go on. Where no namespace can be made, the pool
refuses unless ``unsafe_no_network_isolation`` is given (then: rlimits and an empty environment only).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spar.io import DataError

WORKER = Path(__file__).with_name("sandbox_worker.py")
USERNS = Path(__file__).with_name("sandbox_userns.py")
CALL_ID = 1  # spar.sandbox_userns.CALL_ID
SCRATCH = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")  # world-writable places, covered by tmpfs


class SandboxUnavailable(DataError):
    """No isolation can be built here and the user did not accept running without it."""


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 5.0  # per call
    cpu_seconds: int = 5
    memory_bytes: int = 512 << 20  # address space
    processes: int = 16
    open_files: int = 64
    file_bytes: int = 8 << 20  # largest file a call may write (its printed output included)
    output_bytes: int = 64 << 10  # largest result
    disk_bytes: int = 32 << 20  # the private tmpfs
    seccomp: bool = True  # the worker's system-call filter (spar.sandbox_worker.DENIED); a call fails where it cannot load
    fresh_interpreter: bool = True  # each call execs a new Python (nothing of earlier calls in its memory; ~30 ms a call)


@dataclass
class Outcome:
    ok: bool
    value: Any = None
    error: str | None = None
    seconds: float | None = None


def _unshare() -> str | None:
    return shutil.which("unshare")


def _homes() -> list[str]:
    """The folders the sandbox hides: $HOME and the account's own home (they differ when HOME is
    set elsewhere, as CI does; the account's may be closed to others, /root is 0700), the working
    directory and spar's checkout (two levels deep or more), those that exist and do not lie under
    /tmp or the staging tmpfs (hidden already by the tmpfs over them)."""
    import pwd

    homes = {Path.home().resolve()}
    try:
        homes.add(Path(pwd.getpwuid(os.getuid()).pw_dir).resolve())
    except KeyError:  # pragma: no cover - a uid without an account
        pass
    # the working directory and spar's own checkout too: world-readable, they hold the project's
    # files (.git/config, results, data) that a verifier has no business reading
    for d in (Path.cwd(), WORKER.parent.parent.parent):
        d = d.resolve()
        if len(d.parts) >= 3 and ((d / "pyproject.toml").is_file() or d == Path.cwd().resolve()):  # /a/b or deeper
            homes.add(d)
    homes = {h for h in homes if not any(o != h and o in h.parents for o in homes)}  # the outermost of nested ones
    return sorted(str(h) for h in homes if h.is_dir() and h != Path("/")
                  and not any(h == Path(d) or Path(d) in h.parents for d in ("/tmp", STAGE)))


def _keep() -> list[str]:
    """What Python needs (its installation, the environment, the worker) that lies where the sandbox
    puts a tmpfs (under a home directory or a world-writable directory): bound back read-only."""
    covered = [*(Path(h) for h in _homes()), *(Path(d).resolve() for d in SCRATCH if Path(d).is_dir())]
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), WORKER.parent.resolve()}
    return sorted(str(p) for p in paths if any(p == c or c in p.parents for c in covered))


def _q(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


STAGE = "/dev/shm"  # where what is kept waits while /tmp and the home directory are covered


def _script(cmd: list[str], limits: Limits) -> str:
    """The shell that prepares the sandbox's mount namespace: a private tmpfs /tmp, the home
    directory hidden, what Python needs bound back read-only, every other mount read-only, tmpfs
    over the other world-writable places; then runs ``cmd``. Any step that fails stops it:
    isolation is all or nothing."""
    homes = _homes()
    keep = _keep()
    lines = ["set -e"]
    if keep:
        lines.append(f"mount -t tmpfs -o size=1m,mode=755 none {STAGE}")
        lines += [f"mkdir -p {STAGE}/.keep/{i} && mount --rbind {_q(k)} {STAGE}/.keep/{i}" for i, k in enumerate(keep)]
    lines.append(f"mount -t tmpfs -o size={limits.disk_bytes},mode=1777 none /tmp")
    lines += [f"mount -t tmpfs -o size=1m,mode=755 none {_q(h)}" for h in homes]
    lines += [f"mkdir -p {_q(k)} && mount --rbind {STAGE}/.keep/{i} {_q(k)}" for i, k in enumerate(keep)]
    lines.append("for mp in $(awk '{print $2}' /proc/self/mounts | sort -u); do case \"$mp\" in /proc|/proc/*|/sys|/sys/*|"
                 f"/tmp|/tmp/*|{STAGE}|{STAGE}/*{''.join('|' + h for h in homes)}) continue;; esac; mount -o remount,bind,ro \"$mp\"; done")
    lines += [f"mount -o remount,bind,ro {_q(k)}" for k in keep]
    for d in SCRATCH[1:]:
        lines.append(f"if [ -d {d} ] && [ ! -L {d} ]; then mount -t tmpfs -o size={limits.disk_bytes},mode=1777 none {d}; fi")
    lines.append("cd /tmp && exec " + " ".join(_q(c) for c in cmd))
    return "\n".join(lines)


INNER = ["--net", "--pid", "--ipc", "--fork", "--kill-child", "--mount", "--mount-proc"]


def call_uid() -> int | None:
    """The uid calls run under inside the sandbox, apart from their worker's (0 there): only where
    spar is root, which can map a second identity into the namespace (``spar.sandbox_userns``)."""
    return CALL_ID if os.geteuid() == 0 else None


class _Launch:
    """How a sandboxed command is started. As root: the mounts are prepared as root in a private
    mount namespace, then ``spar.sandbox_userns`` drops to ``nobody`` (root's files, /etc/shadow
    included, stay unreadable) in a user namespace that maps a second uid for the calls, and adds
    the network, pid, IPC and mount namespaces. As another user: one user namespace (one uid),
    prepared the same way from inside."""

    def __init__(self, cmd: list[str], limits: Limits, isolated: bool):
        self.kwargs: dict[str, Any] = {"env": {"PATH": "/usr/bin:/bin"}, "cwd": "/", "start_new_session": True}
        if not isolated:
            self.argv = cmd
        elif os.geteuid() == 0:
            inner = [sys.executable, "-I", "-S", str(USERNS), _unshare(), *INNER, "--", *cmd]
            self.argv = [_unshare(), "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _script(inner, limits)]
        else:
            self.argv = [_unshare(), "--user", "--map-root-user", *INNER, "--", "/bin/sh", "-c", _script(cmd, limits)]

    def popen(self, **kw: Any) -> subprocess.Popen:
        return subprocess.Popen(self.argv, **self.kwargs, **kw)

    def run(self, **kw: Any) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv, **self.kwargs, **kw)


def check(limits: Limits = Limits()) -> dict[str, Any]:
    """Which isolation layers work here (each tried for real)."""
    out: dict[str, Any] = {"platform": sys.platform, "unshare": _unshare()}
    if not sys.platform.startswith("linux") or not _unshare():
        out["namespaces"] = False
        return out
    probe = ("import os, socket; s = socket.socket(); s.settimeout(1); net = s.connect_ex(('1.1.1.1', 53)); "
             "home = os.path.expanduser('~'); "
             "secret = os.access('/etc/shadow', os.R_OK) or os.access(home + '/.bashrc', os.R_OK); "
             "print(os.getpid(), net, int(os.access('/usr', os.W_OK) or os.access('/etc/passwd', os.W_OK) or secret))")
    try:
        r = _Launch([sys.executable, "-I", "-c", probe], limits, True).run(capture_output=True, text=True, timeout=30)
        pid, net, writable = r.stdout.split()
        out.update(namespaces=r.returncode == 0 and pid == "1" and net != "0" and writable == "0", pid_namespace=pid == "1",
                   network_isolated=net != "0", host_files_read_only_and_secrets_hidden=writable == "0", private_tmp=True,
                   runs_as=("nobody (spar runs as root)" if os.geteuid() == 0 else "your own uid, home hidden"),
                   calls_run_as=("a uid of their own, not the worker's" if call_uid() is not None else
                                 "the worker's uid (only root can map a second one)"),
                   error=r.stderr.strip()[-300:] or None)
    except (subprocess.SubprocessError, ValueError, OSError) as e:
        out.update(namespaces=False, error=f"{type(e).__name__}: {e}")
    return out


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_answer(line: bytes, expected_id: int, limits: Limits) -> Outcome:
    """A worker's answer line, read as untrusted: strict JSON (no NaN or Infinity), an object with the
    call's own id, ``ok`` a bool, a value or an error, finite seconds. Anything else raises
    ValueError (the caller replaces the worker)."""
    if len(line) > limits.output_bytes + 4096 or not line.endswith(b"\n"):
        raise ValueError(f"an answer line over {limits.output_bytes + 4096} bytes")
    data = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
    if not isinstance(data, dict) or set(data) - {"id", "ok", "value", "error", "seconds"}:
        raise ValueError("not an answer object")
    if data.get("id") != expected_id or type(data.get("id")) is not int:
        raise ValueError(f"the answer is for call {data.get('id')!r}, not {expected_id}")
    if not isinstance(data.get("ok"), bool):
        raise ValueError("ok is not a bool")
    seconds = data.get("seconds")
    if seconds is not None and (type(seconds) not in (int, float) or not 0 <= seconds <= limits.wall_seconds + 60):
        raise ValueError(f"seconds {seconds!r} out of range")
    if data["ok"]:
        if "value" not in data or "error" in data:
            raise ValueError("a success without a value")
        return Outcome(True, data["value"], None, seconds)
    if not isinstance(data.get("error"), str) or "value" in data:
        raise ValueError("a failure without an error")
    return Outcome(False, None, data["error"][:500], seconds)


_LIBC = "import ctypes, os\n    libc = ctypes.CDLL(None, use_errno=True)\n"
# layer -> a call that returns True only if the forbidden thing worked
PROBES = {
    "call_cannot_unmount_proc": "def probe():\n    " + _LIBC + "    return libc.umount2(b'/proc', 2) == 0\n",
    "call_cannot_mount": "def probe():\n    " + _LIBC + "    return libc.mount(b'none', b'/tmp', b'tmpfs', 0, b'size=1m') == 0\n",
    "call_cannot_reach_the_worker": ("def probe():\n    import os\n    try:\n        open(f'/proc/{os.getppid()}/mem', 'rb')\n"
                                     "        return True\n    except OSError:\n        return False\n"),
    "call_ipc_is_private": ("def probe():\n    " + _LIBC + "    libc.msgget(0x5A19, 0o1666)\n"
                            "    return False\n"),  # judged from the host's table below
    "scratch_emptied_between_calls": "def probe():\n    import os\n    open('/tmp/spar-probe-left', 'w').write('x')\n    return False\n",
    "call_cannot_trace_the_worker": "def probe():\n    " + _LIBC + "    return libc.ptrace(16, os.getppid(), 0, 0) == 0\n",  # PTRACE_ATTACH
    "call_cannot_take_the_workers_descriptors": ("def probe():\n    " + _LIBC
                                                 + "    return libc.syscall(434, os.getppid(), 0) >= 0\n"),  # pidfd_open
    "call_cannot_open_a_unix_socket": ("def probe():\n    import socket\n    try:\n        socket.socket(socket.AF_UNIX)\n"
                                       "        return True\n    except OSError:\n        return False\n"),
    "call_cannot_read_a_keyring": ("def probe():\n    " + _LIBC
                                   + "    return libc.syscall(250, 0, -3, 0) >= 0\n"),  # keyctl(GET_KEYRING_ID, session)
    "call_cannot_make_namespaces": "def probe():\n    " + _LIBC + "    return libc.unshare(0x10000000) == 0\n",  # CLONE_NEWUSER
    # signal 0 asks only whether the call may signal its worker: yes under the worker's own uid
    "call_cannot_signal_the_worker": ("def probe():\n    import os\n    try:\n        os.kill(os.getppid(), 0)\n"
                                      "        return True\n    except OSError:\n        return False\n"),
}


def probe_calls(limits: Limits = Limits()) -> dict[str, bool]:
    """Each layer a model-written call meets, tried for real through a warm one-worker pool: True
    where the forbidden thing was stopped."""
    out = {}
    with Pool(workers=1, limits=limits) as pool:
        for name, code in PROBES.items():
            (got,) = pool.run([(code, "probe", [])])
            out[name] = got.ok and got.value is False
        msg = Path("/proc/sysvipc/msg")
        if msg.exists():
            keys = {line.split()[0] for line in msg.read_text().splitlines()[1:] if line.strip()}
            out["call_ipc_is_private"] = out["call_ipc_is_private"] and str(0x5A19) not in keys
        (left,) = pool.run([("def probe():\n    import os\n    return os.path.exists('/tmp/spar-probe-left')\n", "probe", [])])
        out["scratch_emptied_between_calls"] = out["scratch_emptied_between_calls"] and left.ok and left.value is False
    return out


class _Worker:
    def __init__(self, limits: Limits, isolated: bool):
        self.limits = limits
        args = [sys.executable, "-I", str(WORKER), json.dumps({**asdict(limits), "pid_namespace": isolated,
                                                               "call_uid": call_uid() if isolated else None})]
        self.proc = _Launch(args, limits, isolated).popen(stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                          stderr=subprocess.DEVNULL)
        self.answers: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        """Lines of at most the answer cap; a longer one ends the reading (the worker is replaced)."""
        cap = self.limits.output_bytes + 4096
        reader = self.proc.stdout
        try:
            while True:
                line = reader.readline(cap + 1)
                if not line:
                    break
                self.answers.put(line)
                if not line.endswith(b"\n"):  # over the cap (or cut off): nothing after it can be trusted
                    break
        except (OSError, ValueError):
            pass
        self.answers.put(None)  # the worker is gone (or no longer listened to)

    def call(self, payload: dict, timeout: float) -> Outcome:
        try:
            self.proc.stdin.write((json.dumps(payload) + "\n").encode())
            self.proc.stdin.flush()
            line = self.answers.get(timeout=timeout)
        except (BrokenPipeError, OSError):
            line = None
        except queue.Empty:
            self.kill()
            return Outcome(False, error="the sandbox worker stopped answering; it was killed and replaced")
        if line is None:
            self.kill()
            return Outcome(False, error=f"the sandbox worker died ({self.proc.poll()}); it was replaced")
        try:
            return parse_answer(line, payload["id"], self.limits)
        except (ValueError, UnicodeDecodeError) as e:
            self.kill()
            return Outcome(False, error=f"the sandbox worker's answer broke spar's protocol ({str(e)[:120]}); "
                                        "the worker was killed and replaced")

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()

    def alive(self) -> bool:
        return self.proc.poll() is None


class Pool:
    """Warm workers that evaluate (code, function, arguments) calls; ``run`` keeps call order."""

    def __init__(self, workers: int = 2, limits: Limits = Limits(), unsafe_no_network_isolation: bool = False):
        self.limits = limits
        layers = check(limits) if sys.platform.startswith("linux") else {"namespaces": False}
        self.isolated = bool(layers.get("namespaces"))
        if not self.isolated and not unsafe_no_network_isolation:
            raise SandboxUnavailable("no namespace can be made here (" + str(layers.get("error") or "no unshare") + "); "
                                     "model-written code will not run without it unless you pass "
                                     "--unsafe-no-network-isolation")
        self.size = max(1, workers)
        self._idle: queue.Queue = queue.Queue()
        for _ in range(self.size):
            self._idle.put(_Worker(limits, self.isolated))

    def run(self, calls: list[tuple[str, str, list]]) -> list[Outcome]:
        """Each call is (code, function name, arguments)."""
        results: list[Outcome | None] = [None] * len(calls)
        todo: queue.Queue = queue.Queue()
        for i, c in enumerate(calls):
            todo.put(i)

        def serve() -> None:
            w = self._idle.get()
            try:
                while True:
                    try:
                        i = todo.get_nowait()
                    except queue.Empty:
                        return
                    code, func, args = calls[i]
                    try:
                        results[i] = w.call({"id": i, "code": code, "func": func, "args": list(args)},
                                            timeout=self.limits.wall_seconds + 10)
                    except Exception as e:  # noqa: BLE001 - a worker's failure is the call's, never the pool's
                        w.kill()
                        results[i] = Outcome(False, error=f"the sandbox worker failed ({type(e).__name__}); it was replaced")
                    if not w.alive():
                        w = _Worker(self.limits, self.isolated)
            finally:
                self._idle.put(w)

        threads = [threading.Thread(target=serve) for _ in range(min(self.size, len(calls)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [r if r is not None else Outcome(False, error="not run") for r in results]

    def close(self) -> None:
        while not self._idle.empty():
            w = self._idle.get()
            try:
                w.proc.stdin.close()
            except OSError:
                pass
            w.kill()

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
