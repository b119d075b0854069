"""The sandbox against a hostile corpus: programs a model could write as a "verifier", each trying
one thing. Every one must end as a recorded failure of its call, with this process alive, nothing
written outside the sandbox, no connection accepted, no secret read, and the next calls unaffected."""

import os
import socket
import sys
import threading
from pathlib import Path

import pytest

import spar
from spar.sandbox import Limits, Pool, SandboxUnavailable, call_uid, check

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox's namespaces are Linux's")

SECRET = "spar-sandbox-test-secret-3141"
REPO_FILE = Path(spar.__file__).parent / "PWNED_BY_SANDBOX"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if not check().get("namespaces"):
        pytest.skip("no namespaces on this machine: `spar sandbox check` says why")
    os.environ["SPAR_SANDBOX_TEST_SECRET"] = SECRET
    home_secret = Path.home() / ".spar-sandbox-test-secret"
    home_secret.write_text(SECRET)
    outside = tmp_path_factory.mktemp("outside") / "written.txt"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    accepted, stop = [], threading.Event()

    # a host service on a UNIX socket outside the sandbox's private scratch places, open to everyone
    unix_dir = Path(__file__).resolve().parent / ".sandbox-test-socket"
    unix_dir.mkdir(exist_ok=True)
    unix_path = unix_dir / "s"
    unix_path.unlink(missing_ok=True)
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(unix_path))
    os.chmod(unix_path, 0o666)
    unix.listen(8)
    unix.settimeout(0.2)

    def accept():
        while not stop.is_set():
            for srv in (listener, unix):
                try:
                    accepted.append(srv.accept())
                except (socket.timeout, OSError):
                    pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    pool = Pool(workers=2, limits=Limits(wall_seconds=2.0, cpu_seconds=2, memory_bytes=256 << 20))
    yield {"pool": pool, "port": listener.getsockname()[1], "outside": outside, "accepted": accepted,
           "home_secret": home_secret, "unix": str(unix_path)}
    pool.close()
    stop.set()
    t.join()
    listener.close()
    unix.close()
    unix_path.unlink(missing_ok=True)
    unix_dir.rmdir()
    home_secret.unlink(missing_ok=True)
    os.environ.pop("SPAR_SANDBOX_TEST_SECRET", None)


LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
NR = LIBC + "import pyseccomp\nNR = lambda name: pyseccomp.resolve_syscall(pyseccomp.system_arch(), name)\n"
HOSTILE = {
    "infinite_loop": "while True: pass",
    "sleep_past_timeout": "import time; time.sleep(60)",
    "fork_bomb": "import os\nwhile True:\n    os.fork()",
    "ten_gb": "return len(bytearray(10 ** 10))",
    "memory_creep": "a = []\nwhile True:\n    a.append(bytearray(10 ** 7))",
    "deep_recursion": "def r(n):\n    return r(n + 1)\nreturn r(0)",
    "c_stack_overflow": "import sys\nsys.setrecursionlimit(10 ** 7)\ndef r(n):\n    return r(n + 1)\nreturn r(0)",
    "catastrophic_regex": "import re\nreturn bool(re.match(r'(a+)+$', 'a' * 64 + 'b'))",
    "write_outside": "open({outside!r}, 'w').write('x')\nreturn True",
    "write_into_spar": "open({repo!r}, 'w').write('x')\nreturn True",
    "fill_the_disk": "f = open('big', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))",
    "many_files": "i = 0\nwhile True:\n    open(f'f{{i}}', 'w').close()\n    i += 1",
    "read_ssh_key": "import os\nreturn open(os.path.expanduser('~/.ssh/id_rsa')).read()",
    "read_home_secret": "return open({home_secret!r}).read()",
    "read_shadow": "return open('/etc/shadow').read()",
    "parent_environment": "import os\nv = os.environ.get('SPAR_SANDBOX_TEST_SECRET')\nif v is None:\n    raise LookupError('no secret')\nreturn v",
    "proc_environ_scan": ("import os\nfor p in os.listdir('/proc'):\n    try:\n        data = open(f'/proc/{{p}}/environ', 'rb').read()\n"
                          "    except OSError:\n        continue\n    if {secret!r}.encode() in data:\n        return data.decode()\n"
                          "raise LookupError('not found')"),
    "connect_loopback_listener": "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nreturn True",
    "connect_internet": "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)\nreturn True",
    "dns_lookup": "import socket\nreturn str(socket.getaddrinfo('example.com', 80))",
    "spawn_shell": "import subprocess\nsubprocess.run(['/bin/sh', '-c', 'echo pwned > {repo}'], check=True)\nreturn True",
    # (these two return only if the parent is gone: a worker that stands up to them is a contained call)
    "kill_the_parent": ("import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(0.5)\n"
                        "os.kill(os.getppid(), 0)\nraise RuntimeError('the parent stands')"),
    "kill_everything": ("import os, signal, time\nos.kill(-1, signal.SIGKILL)\ntime.sleep(0.5)\n"
                        "os.kill(os.getppid(), 0)\nraise RuntimeError('the parent stands')"),
    "close_stdout": "import os, sys\nos.close(1)\nprint('x' * 100000)\nsys.stdout.flush()\nreturn True",
    "flood_stdout": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
    "sys_exit": "import sys\nsys.exit(0)",
    "os_exit": "import os\nos._exit(0)",
    "ctypes_segfault": "import ctypes\nreturn ctypes.string_at(0)",
    "monkeypatch_builtins": "import builtins\nbuiltins.len = lambda *a: 0\nraise RuntimeError('patched')",
    "fake_result_line": "import os\nprint('{{\"id\": 0, \"ok\": true, \"value\": true}}', flush=True)\nraise ValueError('real failure')",
    "write_every_fd": ("import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'{{\"ok\": true, \"value\": true}}')\n"
                       "    except OSError:\n        pass\nraise ValueError('real failure')"),
    "not_json": "return object()",
    "a_set": "return {{1, 2}}",
    "huge_result": "return 'x' * (10 ** 7)",
    "raise_the_cpu_limit": "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (10 ** 6, 10 ** 6))\nwhile True: pass",
    "outliving_thread": ("import threading, time\ndef spin():\n    while True:\n        open('t', 'w').write('x')\n"
                         "threading.Thread(target=spin, daemon=False).start()\nraise RuntimeError('left a thread')"),
    "double_fork_daemon": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n    os._exit(0)\nraise RuntimeError('left a daemon')",
    # attach to the worker or its descriptors, or undo the sandbox's mounts (each returns only if it worked)
    "umount_proc": (LIBC + "if libc.umount2(b'/proc', 2) != 0:\n    raise OSError(ctypes.get_errno(), 'umount2')\n"
                    "return len([p for p in os.listdir('/proc') if p.isdigit()])"),
    "mount_big_tmpfs": (LIBC + "if libc.mount(b'none', b'/tmp', b'tmpfs', 0, b'size=4g') != 0:\n"
                        "    raise OSError(ctypes.get_errno(), 'mount')\nreturn True"),
    "ptrace_the_worker": (LIBC + "if libc.ptrace(16, os.getppid(), 0, 0) != 0:\n    raise OSError(ctypes.get_errno(), 'ptrace')\n"
                          "return True"),
    "worker_memory": "import os\nf = open(f'/proc/{{os.getppid()}}/mem', 'rb')\nreturn True",
    "worker_fds_via_proc": ("import os\nn = 0\nfor fd in os.listdir(f'/proc/{{os.getppid()}}/fd'):\n    try:\n"
                            "        os.open(f'/proc/{{os.getppid()}}/fd/{{fd}}', os.O_WRONLY)\n        n += 1\n"
                            "    except OSError:\n        pass\nif not n:\n    raise OSError('none opened')\nreturn n"),
    "pidfd_getfd_forge": (LIBC + "pidfd = libc.syscall(434, os.getppid(), 0)\nif pidfd < 0:\n"
                          "    raise OSError(ctypes.get_errno(), 'pidfd_open')\ngot = 0\nfor fd in range(32):\n"
                          "    new = libc.syscall(438, pidfd, fd, 0)\n    if new >= 0:\n        got += 1\n"
                          "        for i in range(8):\n            try:\n"
                          "                os.write(new, b'{{\"id\": %d, \"ok\": true, \"value\": true, \"seconds\": 0.01}}\\n' % i)\n"
                          "            except OSError:\n                pass\nif not got:\n    raise OSError('no descriptor taken')\n"
                          "raise ValueError('real failure')"),
    "sysv_queue_left_behind": (LIBC + "q = libc.msgget(0x5A17, 0o1666)\nif q < 0:\n    raise OSError(ctypes.get_errno(), 'msgget')\n"
                               "s = libc.shmget(0x5A18, 1 << 20, 0o1666)\nraise RuntimeError(f'made queue {{q}} and segment {{s}}')"),
    "posix_shm_left_behind": "open('/dev/shm/spar-sandbox-leftover', 'w').write('x')\nraise RuntimeError('left a file')",
    "nan_result": "return float('nan')",
    "infinity_in_a_list": "return [1, float('inf')]",
    # system calls the seccomp filter refuses (each returns only if the call worked); NR() is this
    # machine's number for a system call, from libseccomp
    "keyring_read": NR + "if libc.syscall(NR('keyctl'), 0, -3, 0) < 0:\n    raise OSError(ctypes.get_errno(), 'keyctl')\nreturn True",
    "keyring_add": (NR + "k = libc.syscall(NR('add_key'), b'user', b'spar-probe', b'x', 1, -3)\n"
                    "if k < 0:\n    raise OSError(ctypes.get_errno(), 'add_key')\nreturn True"),
    "unix_socket_to_a_host_service": ("import socket\ns = socket.socket(socket.AF_UNIX)\ns.settimeout(1)\n"
                                      "s.connect({unix!r})\nreturn True"),
    "unix_socketpair": "import socket\nsocket.socketpair(socket.AF_UNIX)\nreturn True",
    "abstract_unix_socket": "import socket\ns = socket.socket(socket.AF_UNIX)\ns.bind('\\0spar-probe')\nreturn True",
    "new_user_namespace": LIBC + "if libc.unshare(0x10000000 | 0x00020000) != 0:\n    raise OSError(ctypes.get_errno(), 'unshare')\nreturn True",
    "clone_into_new_namespaces": (NR + "pid = libc.syscall(NR('clone'), 0x10000000 | 0x00020000 | 17, 0, 0, 0, 0)\n"
                                  "if pid == 0:\n    os._exit(0)\nif pid < 0:\n    raise OSError(ctypes.get_errno(), 'clone')\nreturn True"),
    "setns_into_the_workers": (LIBC + "fd = os.open(f'/proc/{{os.getppid()}}/ns/mnt', os.O_RDONLY)\n"
                               "if libc.setns(fd, 0) != 0:\n    raise OSError(ctypes.get_errno(), 'setns')\nreturn True"),
    "process_vm_readv_of_the_worker": (NR + "buf = ctypes.create_string_buffer(64)\n"
                                       "iov = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 64)\n"
                                       "n = libc.syscall(NR('process_vm_readv'), os.getppid(), iov, 1, iov, 1, 0)\n"
                                       "if n < 0:\n    raise OSError(ctypes.get_errno(), 'process_vm_readv')\nreturn True"),
    "posix_message_queue": (NR + "q = libc.syscall(NR('mq_open'), b'spar-probe', 0o100 | 0o2, 0o666, 0)\n"
                            "if q < 0:\n    raise OSError(ctypes.get_errno(), 'mq_open')\nraise RuntimeError('made a queue')"),
    "sysv_semaphores": (LIBC + "if libc.semget(0x5A1A, 4, 0o1666) < 0:\n    raise OSError(ctypes.get_errno(), 'semget')\n"
                        "raise RuntimeError('made semaphores')"),
    "io_uring_around_the_filter": (NR + "params = ctypes.create_string_buffer(120)\n"
                                   "fd = libc.syscall(NR('io_uring_setup'), 8, params)\n"
                                   "if fd < 0:\n    raise OSError(ctypes.get_errno(), 'io_uring_setup')\nreturn True"),
    "bpf_program": (NR + "attr = ctypes.create_string_buffer(128)\nif libc.syscall(NR('bpf'), 0, attr, 128) < 0:\n"
                    "    raise OSError(ctypes.get_errno(), 'bpf')\nreturn True"),
    "userfaultfd": NR + "if libc.syscall(NR('userfaultfd'), 0) < 0:\n    raise OSError(ctypes.get_errno(), 'userfaultfd')\nreturn True",
    "pivot_root": (NR + "if libc.syscall(NR('pivot_root'), b'/tmp', b'/tmp') != 0 and libc.chroot(b'/tmp') != 0:\n"
                   "    raise OSError(ctypes.get_errno(), 'pivot_root and chroot')\nreturn True"),
    "stop_the_worker": ("import os, signal, time\nos.kill(os.getppid(), signal.SIGSTOP)\ntime.sleep(0.3)\n"
                        "raise RuntimeError('sent SIGSTOP')"),
    "sethostname": LIBC + "if libc.sethostname(b'pwned', 5) != 0:\n    raise OSError(ctypes.get_errno(), 'sethostname')\nreturn True",
    # capabilities, priorities and limits the call would need to take back
    "regain_capabilities": ("import os\ntry:\n    os.setresuid(0, 0, 0)\nexcept OSError:\n    pass\n"
                            "eff = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]\n"
                            "if int(eff, 16) == 0:\n    raise PermissionError('no capabilities')\nreturn True"),
    "raise_the_memory_limit": ("import resource\nresource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)\n"
                               "return len(bytearray(1 << 30))"),
    "mlock_everything": LIBC + "if libc.mlockall(3) != 0:\n    raise OSError(ctypes.get_errno(), 'mlockall')\nreturn True",
    "oom_score_minus_1000": ("with open('/proc/self/oom_score_adj', 'w') as f:\n    f.write('-1000')\n"
                             "return open('/proc/self/oom_score_adj').read().strip() == '-1000'"),
    "nice_minus_20": "import os\nos.nice(-20)\nreturn True",
    "realtime_scheduler": "import os\nos.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))\nreturn True",
    "mknod_a_device": "import os, stat\nos.mknod('mem', stat.S_IFCHR | 0o666, os.makedev(1, 1))\nreturn open('mem', 'rb').read(16).hex()",
    "read_dev_mem": "return open('/dev/mem', 'rb').read(16).hex()",
    "write_proc_sys": "with open('/proc/sys/vm/drop_caches', 'w') as f:\n    f.write('3')\nreturn True",
    "fanotify_watch": NR + "if libc.syscall(NR('fanotify_init'), 0, 0) < 0:\n    raise OSError(ctypes.get_errno(), 'fanotify_init')\nreturn True",
    # warm-pool cases: what one call leaves for the calls after it
    "poison_the_next_interpreter": ("import os, sys\nbad = 'raise SystemExit(\"poisoned\")\\n'\n"
                                    "for d in ('/tmp', os.getcwd(), os.path.dirname(os.getcwd()), *sys.path):\n"
                                    "    for name in ('sitecustomize.py', 'usercustomize.py', 'json.py', 'encodings.py'):\n"
                                    "        try:\n            open(os.path.join(d, name), 'w').write(bad)\n"
                                    "        except OSError:\n            pass\nraise RuntimeError('planted what it could')"),
    "fill_the_workers_folder": ("import os\nbase = os.path.dirname(os.getcwd())\nfor i in range(64):\n"
                                "    try:\n        with open(os.path.join(base, f'fill{{i}}'), 'wb') as f:\n"
                                "            while True:\n                f.write(b'x' * (1 << 20))\n"
                                "    except OSError:\n        pass\nraise RuntimeError('filled what it could')"),
    "read_the_checkout": "return open({checkout!r}).read()",
    "list_the_working_directory": ("import os\nnames = os.listdir({cwd!r})\n"
                                   "if not {{'.git', 'pyproject.toml', 'tests'}} & set(names):\n"
                                   "    raise LookupError('only mount points: ' + ', '.join(names))\nreturn names"),
    "kill_the_workers_group": ("import os, signal, time\nfor pg in {{os.getpgid(1), os.getpgid(os.getppid())}}:\n"
                               "    try:\n        os.killpg(pg, signal.SIGKILL)\n    except OSError:\n        pass\n"
                               "time.sleep(0.3)\nraise RuntimeError('still here')"),
}

# only where a call runs under a uid of its own (spar is root): under the worker's uid these are allowed
if call_uid() is not None:
    HOSTILE.update({
        "signal_the_worker": "import os\nos.kill(os.getppid(), 0)\nreturn True",
        "list_the_workers_folder": "import os\nreturn os.listdir(os.path.dirname(os.getcwd()))",
    })

CHECK = "def verify(x):\n    import os\n    return sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), len([1, 2, 3])\n"


def program(name: str, env) -> str:
    body = HOSTILE[name].format(outside=str(env["outside"]), repo=str(REPO_FILE), home_secret=str(env["home_secret"]),
                                secret=SECRET, port=env["port"], unix=env["unix"], cwd=os.getcwd(),
                                checkout=str(Path(spar.__file__).resolve().parents[2] / "pyproject.toml"))
    return "def verify(x):\n" + "\n".join("    " + line for line in body.splitlines()) + "\n"


def test_the_corpus_is_large_enough():
    assert len(HOSTILE) >= 74  # twice the 37 programs the project had when the review asked for more


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_verifier_is_contained(name, env):
    pool = env["pool"]
    (out,) = pool.run([(program(name, env), "verify", [1])])
    assert not out.ok and out.error, (name, out)
    assert SECRET not in str(out.value) and SECRET not in (out.error or "")
    assert not env["outside"].exists() and not REPO_FILE.exists()
    assert not env["accepted"], "the sandbox reached a loopback or UNIX-socket listener"
    assert not Path("/dev/shm/spar-sandbox-leftover").exists()
    assert not Path("/dev/mqueue/spar-probe").exists()
    for table in ("/proc/sysvipc/msg", "/proc/sysvipc/shm", "/proc/sysvipc/sem"):  # the host's SysV IPC: nothing of the call's
        if Path(table).exists():
            keys = {line.split()[0] for line in Path(table).read_text().splitlines()[1:] if line.strip()}
            assert not keys & {str(0x5A17), str(0x5A18), str(0x5A1A)}, (name, table)
    # the next calls are unaffected: a fresh process with nothing left over from this one
    for after in pool.run([(CHECK, "verify", [0]), (CHECK, "verify", [0])]):
        assert after.ok, (name, after)
        pids, three = after.value
        assert three == 3 and len(pids) <= 2, (name, pids)


def test_good_calls_come_back_in_order_with_their_values():
    if not check().get("namespaces"):
        pytest.skip("no namespaces on this machine: `spar sandbox check` says why")
    code = "def double(x):\n    return {'twice': x * 2}\n"
    with Pool(workers=2, limits=Limits(wall_seconds=2.0)) as pool:
        out = pool.run([(code, "double", [i]) for i in range(20)])
    assert [o.value for o in out] == [{"twice": 2 * i} for i in range(20)]


def test_refuses_without_namespaces_unless_told(monkeypatch):
    import spar.sandbox as S

    monkeypatch.setattr(S, "_unshare", lambda: None)
    with pytest.raises(SandboxUnavailable, match="--unsafe-no-network-isolation"):
        Pool(workers=1)
    with Pool(workers=1, unsafe_no_network_isolation=True) as pool:
        (out,) = pool.run([("def f():\n    return 1\n", "f", [])])
    assert out.ok and out.value == 1


def test_sandbox_commands(tmp_path):
    import json

    from typer.testing import CliRunner

    from spar.cli import app

    if not check().get("namespaces"):
        pytest.skip("no namespaces on this machine")
    f = tmp_path / "v.py"
    f.write_text("def verify(text):\n    return len(text.split()) >= 3\n\ndef loop(x):\n    while True:\n        pass\n")
    runner = CliRunner()
    res = runner.invoke(app, ["sandbox", "run", str(f), "--call", "verify", "--input", '"a b c"'])
    assert res.exit_code == 0 and json.loads(res.output) == {"ok": True, "value": True, "error": None,
                                                             "seconds": json.loads(res.output)["seconds"]}
    res = runner.invoke(app, ["sandbox", "run", str(f), "--call", "loop", "--input", "[1]", "--timeout", "0.5"])
    assert res.exit_code == 0 and "timed out" in json.loads(res.output)["error"]
    res = runner.invoke(app, ["sandbox", "run", str(f), "--call", "verify", "--input", "{nope"])
    assert res.exit_code == 2 and "--input: not JSON" in res.output
    res = runner.invoke(app, ["sandbox", "run", str(tmp_path / "missing.py"), "--call", "verify"])
    assert res.exit_code == 2 and "no such file" in res.output
    res = runner.invoke(app, ["sandbox", "check"])
    assert res.exit_code == 0 and json.loads(res.output)["namespaces"] is True


def test_a_call_sees_nothing_the_call_before_it_left_in_scratch_places():
    if not check().get("namespaces"):
        pytest.skip("no namespaces on this machine: `spar sandbox check` says why")
    leave = ("def verify(x):\n    import os\n    for d in ('/tmp', '/var/tmp', '/dev/shm'):\n"
             "        if os.path.isdir(d):\n            open(os.path.join(d, 'left-by-' + x), 'w').write(x)\n"
             "    os.makedirs('/tmp/dir-left', exist_ok=True)\n    return x\n")
    look = ("def verify(x):\n    import os\n    return sorted(n for d in ('/tmp', '/var/tmp', '/dev/shm') if os.path.isdir(d)\n"
            "                  for n in os.listdir(d) if 'left' in n)\n")
    with Pool(workers=1, limits=Limits(wall_seconds=2.0)) as pool:  # one warm worker: the same process serves both
        first, second = pool.run([(leave, "verify", ["secret-input"]), (look, "verify", [""])])
    assert first.ok and first.value == "secret-input"
    assert second.ok and second.value == [], second


SCAN = """def scan(marker, digest):
    import hashlib, re
    needle = ("SPAR" + "-MARK-" + marker).encode()  # built here, so only an earlier call's copy is followed by the text
    found = 0
    mem = open('/proc/self/mem', 'rb', 0)
    for line in open('/proc/self/maps').read().splitlines():
        m = re.match(r'([0-9a-f]+)-([0-9a-f]+) r', line)
        if not m or int(m.group(2), 16) - int(m.group(1), 16) > 64 << 20:
            continue
        try:
            mem.seek(int(m.group(1), 16))
            data = mem.read(int(m.group(2), 16) - int(m.group(1), 16))
        except (OSError, ValueError, OverflowError):
            continue
        i = data.find(needle)
        while i >= 0:
            found += hashlib.sha256(data[i + len(needle): i + len(needle) + 13]).hexdigest() == digest
            i = data.find(needle, i + 1)
    return found
"""


def test_a_call_finds_nothing_of_an_earlier_calls_input_in_its_own_memory():
    import hashlib

    if not check().get("namespaces"):
        pytest.skip("no namespaces on this machine: `spar sandbox check` says why")
    put = "def put(x):\n    return len(x)\n"
    with Pool(workers=1, limits=Limits(wall_seconds=5.0)) as pool:  # one warm worker serves all three
        first, control, scan = pool.run([(put, "put", ["SPAR-MARK-7431 secret input" + "y" * 3000]),
                                         (SCAN.replace("def scan(marker, digest):", "def control(marker, digest):\n"
                                                       "    keep = 'SPAR-MARK-' + marker + ' secret input'"),
                                          "control", ["7431", hashlib.sha256(b" secret input").hexdigest()]),
                                         (SCAN, "scan", ["7431", hashlib.sha256(b" secret input").hexdigest()])])
    assert first.ok and control.ok and scan.ok, (first, control, scan)
    assert control.value >= 1  # the scan finds the text where it is (here: in the call's own code)
    assert scan.value == 0, "a call read an earlier call's input in its memory"


@pytest.mark.parametrize("line,why", [
    (b'{"id": 0, "ok": true, "value": 1, "seconds": 0.1}\n', None),
    (b'{"id": 0, "ok": false, "error": "boom", "seconds": 0.1}\n', None),
    (b'not json\n', "Expecting"),
    (b'{"id": 0, "ok": true, "value": NaN, "seconds": 0.1}\n', "NaN"),
    (b'{"id": 0, "ok": true, "value": Infinity}\n', "Infinity"),
    (b'{"id": 1, "ok": true, "value": true}\n', "not 0"),
    (b'{"id": true, "ok": true, "value": true}\n', "not 0"),
    (b'{"id": 0, "ok": 1, "value": true}\n', "bool"),
    (b'{"id": 0, "ok": true}\n', "without a value"),
    (b'{"id": 0, "ok": false, "value": 1}\n', "without an error"),
    (b'{"id": 0, "ok": true, "value": 1, "seconds": 4711.0}\n', "seconds"),
    (b'{"id": 0, "ok": true, "value": 1, "admin": true}\n', "not an answer"),
    (b'[0, true]\n', "not an answer"),
    (b'{"id": 0, "ok": true, "value": 1}', "over"),  # cut off: no end of line
    (b'{"id": 0, "ok": true, "value": "' + b"x" * (70 << 10) + b'"}\n', "over"),
])
def test_the_parent_reads_a_workers_answer_as_untrusted(line, why):
    from spar.sandbox import parse_answer

    if why is None:
        out = parse_answer(line, 0, Limits())
        assert out.seconds == 0.1 and (out.value == 1 if out.ok else out.error == "boom")
        return
    with pytest.raises(ValueError, match=why):
        parse_answer(line, 0, Limits())


def test_a_worker_that_breaks_the_protocol_is_replaced_and_the_pool_goes_on(monkeypatch):
    if not check().get("namespaces"):
        pytest.skip("no namespaces on this machine: `spar sandbox check` says why")
    import spar.sandbox as S

    real = S.parse_answer
    broken = {"n": 0}

    def once_bad(line, expected_id, limits):
        if broken["n"] == 0:
            broken["n"] += 1
            raise ValueError("a forged line")
        return real(line, expected_id, limits)

    monkeypatch.setattr(S, "parse_answer", once_bad)
    code = "def f(x):\n    return x + 1\n"
    with Pool(workers=1, limits=Limits(wall_seconds=2.0)) as pool:
        outs = pool.run([(code, "f", [1]), (code, "f", [2]), (code, "f", [3])])
    assert not outs[0].ok and "protocol" in outs[0].error and "replaced" in outs[0].error
    assert [o.value for o in outs[1:]] == [3, 4]


def test_sandbox_check_tries_each_call_layer_for_real():
    if not check().get("namespaces"):
        pytest.skip("no namespaces on this machine: `spar sandbox check` says why")
    from spar.sandbox import PROBES, probe_calls

    got = probe_calls(Limits(wall_seconds=2.0))
    assert set(got) == set(PROBES), got
    # under the worker's own uid (spar not root) a call may signal its worker; every other layer holds
    expected = {name: name != "call_cannot_signal_the_worker" or call_uid() is not None for name in PROBES}
    assert got == expected, got


def test_a_call_runs_under_a_uid_of_its_own_where_spar_is_root():
    if not check().get("namespaces"):
        pytest.skip("no namespaces on this machine: `spar sandbox check` says why")
    if call_uid() is None:
        pytest.skip("only root can map a second uid into the sandbox (a call runs under the worker's uid)")
    who = ("def who():\n    import os\n    me = (os.getuid(), os.geteuid(), os.getgid(), os.getgroups())\n"
           "    owner = os.stat('/proc/1').st_uid\n    return [list(me[:3]), me[3], owner]\n")
    with Pool(workers=1, limits=Limits(wall_seconds=2.0)) as pool:
        (out,) = pool.run([(who, "who", [])])
    assert out.ok and out.value == [[1, 1, 1], [], 0], out
