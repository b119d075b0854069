"""The price of isolation: verifier calls per second through the sandbox pool against plain
in-process calls of the same functions, and how long the sandbox takes to contain a fork bomb and
a memory bomb (wall time of the failed call, and the next good call after it). The pool's default
runs each call in a fresh interpreter under the seccomp filter; two more rows show what each costs."""

from __future__ import annotations

import json
import platform
import time

from rich.console import Console
from rich.table import Table

from spar.sandbox import Limits, Pool, check

VERIFIER = '''
import re
def verify(text):
    words = re.findall(r"[A-Za-z']+", text)
    return len(words) >= 5 and text.strip().endswith(".") and "," not in text
'''
BOMBS = {"fork bomb": "import os\ndef verify(x):\n    while True:\n        os.fork()\n",
         "memory bomb": "def verify(x):\n    a = []\n    while True:\n        a.append(bytearray(10 ** 8))\n"}


def main() -> None:
    layers = check()
    texts = [f"This is answer number {i} and it has words." for i in range(400)]
    ns: dict = {}
    exec(VERIFIER, ns)  # our own fixed verifier, in-process on purpose: the baseline
    t0 = time.perf_counter()
    for t in texts:
        ns["verify"](t)
    inproc = len(texts) / (time.perf_counter() - t0)
    fig = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "namespaces": layers.get("namespaces"),
           "in_process_calls_per_s": round(inproc)}
    table = Table(title="verifier calls through the sandbox")
    for c in ("setting", "calls/s", "vs in-process"):
        table.add_column(c, justify="right")
    table.add_row("in-process (no isolation)", f"{inproc:,.0f}", "1x")
    # the default (a fresh interpreter per call, the seccomp filter), then forked calls, then no filter
    settings = [(w, "", Limits()) for w in (1, 2, 4)] + [
        (2, "_forked", Limits(fresh_interpreter=False)), (2, "_forked_no_seccomp", Limits(fresh_interpreter=False, seccomp=False))]
    for workers, tag, limits in settings:
        with Pool(workers=workers, limits=limits) as pool:
            pool.run([(VERIFIER, "verify", [texts[0]])] * workers)  # warm
            t0 = time.perf_counter()
            out = pool.run([(VERIFIER, "verify", [t]) for t in texts])
            rate = len(texts) / (time.perf_counter() - t0)
        assert all(o.ok for o in out)
        fig[f"pool_{workers}{tag}_calls_per_s"] = round(rate, 1)
        what = {"": "", "_forked": ", forked calls (no fresh interpreter)",
                "_forked_no_seccomp": ", forked calls, no seccomp filter"}[tag]
        table.add_row(f"sandbox pool, {workers} worker(s){what}", f"{rate:,.0f}", f"{inproc / rate:,.0f}x slower")
    Console().print(table)
    bombs = Table(title="containing a bomb (limits: 5 s wall, 5 s CPU, 512 MiB, 16 processes)")
    for c in ("program", "outcome", "seconds to fail", "next good call (s)"):
        bombs.add_column(c, justify="right")
    with Pool(workers=1, limits=Limits()) as pool:
        for name, code in BOMBS.items():
            t0 = time.perf_counter()
            (out,) = pool.run([(code, "verify", [1])])
            failed = time.perf_counter() - t0
            t0 = time.perf_counter()
            (good,) = pool.run([(VERIFIER, "verify", [texts[0]])])
            nxt = time.perf_counter() - t0
            bombs.add_row(name, out.error or "not contained!", f"{failed:.2f}", f"{nxt:.3f}")
            fig[name.replace(" ", "_")] = {"error": out.error, "seconds": round(failed, 2), "next_call_seconds": round(nxt, 3),
                                           "next_call_ok": good.ok}
    Console().print(bombs)
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
