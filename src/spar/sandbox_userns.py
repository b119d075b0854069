"""The sandbox's user namespace with two identities, for spar running as root (standard library
only; ``python -I -S sandbox_userns.py UNSHARE [INNER ...] -- CMD ...``).

An unprivileged process can map only its own uid into a user namespace it makes, so the worker and
the calls it runs would share one identity. Root can map more: this launcher forks a child that
becomes ``nobody`` and makes a new user namespace; the root parent then writes the child's uid and
gid maps with two lines, namespace 0 -> host ``nobody`` (the worker) and namespace
:data:`CALL_ID` -> host :data:`CALL_HOST_ID` (every call, see ``spar.sandbox_worker``), and the child
execs ``UNSHARE INNER -- CMD`` to add the network, pid, IPC and mount namespaces. Inside, a call runs
under a uid of its own: it cannot signal, trace or open anything of its worker's, capabilities
aside. The parent waits and exits with the child's status.
"""

import ctypes
import os
import sys

NOBODY = 65534
CALL_ID = 1  # the calls' uid and gid inside the namespace
CALL_HOST_ID = 165534  # ... and on the host: an id no account has (nobody's, past the usual 100000 subordinate-id base)
CLONE_NEWUSER = 0x10000000


def main(argv):
    sep = argv.index("--")
    inner, cmd = argv[:sep], argv[sep + 1:]
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(go_w)
        libc = ctypes.CDLL(None, use_errno=True)
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
        if libc.unshare(CLONE_NEWUSER) != 0:
            os.write(2, f"spar sandbox: unshare(CLONE_NEWUSER) failed: {os.strerror(ctypes.get_errno())}\n".encode())
            os._exit(70)
        os.write(ready_w, b"u")
        if os.read(go_r, 1) != b"g":  # the parent could not write the maps
            os._exit(71)
        os.execv(inner[0], [*inner, "--", *cmd])
    os.close(ready_w)
    os.close(go_r)
    if os.read(ready_r, 1) == b"u":
        try:
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{pid}/{name}", "w") as f:
                    f.write(f"0 {NOBODY} 1\n{CALL_ID} {CALL_HOST_ID} 1\n")
            os.write(go_w, b"g")
        except OSError as e:
            os.write(2, f"spar sandbox: could not map the call's uid: {e}\n".encode())
    os.close(go_w)
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


if __name__ == "__main__":
    main(sys.argv[1:])
