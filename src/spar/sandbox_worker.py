"""The sandbox's worker: runs inside the namespaces that ``spar.sandbox`` sets up, as a script
(``python -I sandbox_worker.py LIMITS_JSON``), standard library only but for ``pyseccomp`` (bindings
of the system's libseccomp, the same library Docker and systemd use for their filters).

It reads one call per line on stdin (``{"id", "code", "func", "args"}``) and answers one line per
call on stdout (``{"id", "ok", "value" | "error", "seconds"}``). Each call runs in a fresh forked
child that execs a new interpreter (so no earlier call's code or input is in its memory): its own process group and empty working directory, stdin from /dev/null, stdout and stderr
into a size-limited file, rlimits on CPU, memory, processes, open files and bytes written, and no
file descriptor but the pipe its one result goes back on. The worker reads at most ``output_bytes``
of that pipe, parses it as JSON and nothing else, kills whatever the call left running, and
removes its directory. Nothing the call does can reach the worker's own stdout.

The worker makes itself non-dumpable, and each call drops every capability (the bounding set too),
takes a uid of its own where the namespace maps one (``call_uid``: spar runs as root, see
``spar.sandbox_userns``) and sets no_new_privs before the model's code runs: inside the user namespace the call would
otherwise hold all of them, and with them attach to the worker (ptrace, ``pidfd_getfd`` on its
result pipe, ``/proc/1/mem``), unmount the private /proc or mount an uncapped tmpfs. Last, a
seccomp filter (:data:`DENIED`) makes the system calls no verifier needs fail with EPERM: mounting,
tracing and reading other processes, other processes' file descriptors, keyrings, new namespaces,
SysV and POSIX IPC, UNIX sockets (the way to host services outside the network namespace), BPF,
io_uring (which would bypass the filter) and the kernel's administration calls. Where the filter
cannot be loaded (no libseccomp) the call fails, unless the limits say ``seccomp: false``.
"""

import json
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import time


PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 4, 24, 38
_CAP_VERSION_3 = 0x20080522


def _libc():
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _not_dumpable():
    """No process without CAP_SYS_PTRACE can attach to this one or read its memory and descriptors."""
    ctypes, libc = _libc()
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def _mapped(uid):
    """Whether ``uid`` is mapped in this user namespace (``spar.sandbox_userns`` maps the calls' uid)."""
    try:
        with open("/proc/self/uid_map") as f:
            return any(int(a) <= uid < int(a) + int(n) for a, _, n in (line.split() for line in f if line.strip()))
    except OSError:
        return False


def _drop_privileges(uid=None):
    """Every capability gone (effective, permitted, inheritable, bounding, ambient) and no way back;
    with ``uid``, the process becomes that uid and gid (no groups) first: not the worker's."""
    ctypes, libc = _libc()
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # past the kernel's last capability: EINVAL, nothing to drop
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header, data = Header(_CAP_VERSION_3, 0), (Data * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset to no capabilities failed")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


# system calls a verifier (a function of a string) has no use for; each fails with EPERM
DENIED = (
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
    "mount_setattr", "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "pidfd_open", "kcmp",
    "keyctl", "add_key", "request_key", "unshare", "setns", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
    "mq_notify", "mq_getsetattr", "shmget", "shmat", "shmdt", "shmctl", "msgget", "msgsnd", "msgrcv", "msgctl",
    "semget", "semop", "semtimedop", "semctl", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "open_by_handle_at", "name_to_handle_at", "init_module", "finit_module",
    "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "syslog", "acct", "quotactl",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "iopl", "ioperm",
)
AF_UNIX = 1
# clone() flags that would make new namespaces (clone3 passes its flags in memory a filter cannot
# read, so it answers ENOSYS and the C library falls back to clone, as under Docker's default profile)
CLONE_NEW = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080)


def _seccomp_filter(limits):
    """The deny-list filter, built once in the worker (each call's child loads it): None where the
    limits turn it off; an OSError to raise in each call where it cannot be built here."""
    if not limits.get("seccomp", True):
        return None
    import errno

    try:
        import pyseccomp as sc
    except (ImportError, OSError) as e:
        return OSError(errno.ENOSYS, f"seccomp unavailable ({e}); install libseccomp2, or set the sandbox limit seccomp=false")
    f = sc.SyscallFilter(defaction=sc.ALLOW)
    deny = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        try:
            f.add_rule(deny, name)
        except (ValueError, RuntimeError, OSError):  # a call this kernel or architecture does not have
            pass
    f.add_rule(deny, "socket", sc.Arg(0, sc.EQ, AF_UNIX))
    f.add_rule(deny, "socketpair", sc.Arg(0, sc.EQ, AF_UNIX))
    for flag in CLONE_NEW:
        f.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    try:
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    except (ValueError, RuntimeError, OSError):
        pass
    return f


def _seccomp(seccomp):
    """Load the filter on this process (after no_new_privs, so no privilege is needed)."""
    if isinstance(seccomp, BaseException):
        raise seccomp
    if seccomp is not None:
        seccomp.load()


def _limit(limits):
    def both(which, value):
        resource.setrlimit(which, (value, value))

    both(resource.RLIMIT_CPU, limits["cpu_seconds"])
    both(resource.RLIMIT_AS, limits["memory_bytes"])
    both(resource.RLIMIT_NPROC, limits["processes"])
    both(resource.RLIMIT_NOFILE, limits["open_files"])
    both(resource.RLIMIT_FSIZE, limits["file_bytes"])
    both(resource.RLIMIT_CORE, 0)
    both(resource.RLIMIT_MEMLOCK, 0)  # no memory pinned past the host's reach
    both(resource.RLIMIT_RTPRIO, 0)
    both(resource.RLIMIT_MSGQUEUE, 0)


CALL_FILE = ".call.json"


def _child(call, limits, seccomp, workdir, result_w):
    """In the forked child: isolate, then run the function (in a fresh interpreter unless the limits
    say ``fresh_interpreter: false``), write one JSON result, exit."""
    try:
        os.setpgid(0, 0)
        os.chdir(workdir)
        uid = limits.get("call_uid")
        if uid is not None and not _mapped(uid):
            raise OSError(f"the calls' uid {uid} is not mapped in the sandbox's user namespace")
        fresh = limits.get("fresh_interpreter", True)
        if fresh:  # the call travels in a file of its own folder, read by the new interpreter
            with open(CALL_FILE, "w") as f:
                json.dump(call, f)
        if uid is not None:  # the call's own folder and its file are the call's; nothing else of the worker's
            for path in (workdir, *([CALL_FILE] if fresh else [])):
                os.chown(path, uid, uid)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(os.path.join(workdir, ".output"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        keep = {0, 1, 2, result_w}
        for fd in range(3, 1024):
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        _limit(limits)
        _drop_privileges(uid)
        _seccomp(seccomp)
        if fresh:
            # A new program image: nothing of the worker's memory (earlier calls' code and input
            # included) is left in the process that runs this call. Rlimits, the dropped
            # capabilities, no_new_privs and the filter all carry over an exec.
            os.set_inheritable(result_w, True)
            os.execve(sys.executable, [sys.executable, "-I", "-S", os.path.abspath(__file__), "--call", str(result_w),
                                       str(limits["output_bytes"])], {})
        result = _run(call)
    except BaseException as e:  # noqa: BLE001 - whatever the code raised is its failure
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"[:500]}
    _answer(result, result_w, limits["output_bytes"])


def _run(call):
    """Run the model's function on its arguments: the result as JSON data, or the failure."""
    try:
        namespace = {"__name__": "verifier"}
        exec(compile(call["code"], "verifier.py", "exec"), namespace)  # noqa: S102 - this is the sandbox
        fn = namespace.get(call["func"])
        if not callable(fn):
            return {"ok": False, "error": f"no function named {call['func']!r}"}
        value = fn(*call.get("args", []))
        try:
            return {"ok": True, "value": json.loads(json.dumps(value, allow_nan=False))}
        except (TypeError, ValueError):
            return {"ok": False, "error": f"the result is not JSON data ({type(value).__name__})"}
    except BaseException as e:  # noqa: BLE001 - whatever the code raised is its failure
        return {"ok": False, "error": f"{type(e).__name__}: {e}"[:500]}


def _answer(result, result_w, output_bytes):
    try:
        data = json.dumps(result, allow_nan=False).encode()
        os.write(result_w, data[: output_bytes + 1])
    finally:
        os._exit(0)


def _fresh_call(result_w, output_bytes):
    """The call in a new interpreter (``--call FD BYTES``): read it from its file, remove the file, run it."""
    try:
        with open(CALL_FILE) as f:
            call = json.load(f)
        os.unlink(CALL_FILE)
        result = _run(call)
    except BaseException as e:  # noqa: BLE001
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"[:500]}
    _answer(result, result_w, output_bytes)


def _others():
    me = os.getpid()
    return [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) not in (me, 1)]


def _clean_up():
    """Kill every process the call left in this pid namespace (the worker is pid 1 here) and reap
    them, so the next call starts alone (up to a second; what still stands is killed again)."""
    deadline = time.monotonic() + 1.0
    while True:
        left = _others()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _reap()
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.005)


def _reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


SCRATCH = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")  # spar.sandbox.SCRATCH: private tmpfs here


def _wipe_scratch(base):
    """Empty the private scratch directories after a call (and the worker's own base folder, kept
    itself), so nothing one call leaves there is seen by the next. Only inside the sandbox, where each of them is
    a tmpfs of this worker's own (spar.sandbox mounts them), never on the host."""
    for d in (*SCRATCH, base):  # the worker's own folder too: a call under the worker's uid may write there
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            path = os.path.join(d, name)
            if path == base:
                continue
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
            except OSError:
                pass


def run_call(call, limits, base, seccomp=None):
    workdir = tempfile.mkdtemp(prefix="call-", dir=base)
    result_r, result_w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(result_r)
        _child(call, limits, seccomp, workdir, result_w)
    os.close(result_w)
    data, deadline, error = b"", start + limits["wall_seconds"], None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            error = f"timed out after {limits['wall_seconds']} s"
            break
        ready, _, _ = select.select([result_r], [], [], left)
        if not ready:
            continue
        chunk = os.read(result_r, 65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limits["output_bytes"]:
            error = f"the result is larger than {limits['output_bytes']} bytes"
            break
    os.close(result_r)
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    status = None
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    if limits.get("pid_namespace"):
        _clean_up()
    _reap()
    shutil.rmtree(workdir, ignore_errors=True)
    if limits.get("pid_namespace"):
        _wipe_scratch(base)
    seconds = round(time.monotonic() - start, 4)
    if error is None:
        try:
            result = json.loads(data.decode()) if data else None
        except (UnicodeDecodeError, ValueError):
            result = None
        if not isinstance(result, dict) or not isinstance(result.get("ok"), bool):
            if status is not None and os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                why = {signal.SIGXCPU: "CPU time limit", signal.SIGKILL: "killed", signal.SIGXFSZ: "file size limit",
                       signal.SIGSEGV: "segmentation fault"}.get(sig, signal.Signals(sig).name)
                error = f"the call died: {why}"
            elif status is not None and os.WIFEXITED(status):
                error = f"the call exited with status {os.WEXITSTATUS(status)} before returning"
            else:
                error = "the call returned no result"
        else:
            return {"id": call["id"], **({"ok": True, "value": result["value"]} if result["ok"] else
                                         {"ok": False, "error": str(result.get("error"))[:500]}), "seconds": seconds}
    return {"id": call["id"], "ok": False, "error": error, "seconds": seconds}


def main():
    limits = json.loads(sys.argv[1])
    _not_dumpable()
    base = tempfile.mkdtemp(prefix="spar-sandbox-")
    if limits.get("call_uid") is not None:
        os.chmod(base, 0o711)  # a call (another uid) reaches its own folder by name, lists nothing
    os.chdir(base)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    out = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing else of the worker's writes its protocol pipe
    seccomp = _seccomp_filter(limits)
    for line in sys.stdin:
        call = json.loads(line)
        out.write(json.dumps(run_call(call, limits, base, seccomp)) + "\n")
        out.flush()
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--call"]:
        _fresh_call(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
