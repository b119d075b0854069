"""The mutation scores of `make mutation`, one row per module: mutants, killed, survived, not reached
by the selected tests, timeouts, and the score (killed / (mutants - equivalent)). Reads `mutmut
results --all true` (run after `mutmut run`); the equivalent mutants (a change no test can see,
because the behaviour is the same) are listed with their reason in tests/mutation-equivalent.txt.
Ends with one line of JSON."""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.85


def equivalent() -> set[str]:
    path = ROOT / "tests" / "mutation-equivalent.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return {ln.split()[0] for ln in lines if ln.strip() and not ln.startswith("#")}


def main() -> int:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    eq = equivalent()
    rows: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    survivors: dict[str, list[str]] = collections.defaultdict(list)
    for line in out.splitlines():
        m = re.match(r"\s*([\w.]+)\.x[_ǁ][^:]*__mutmut_\d+: (.+)$", line)
        if not m:
            continue
        module, status = m.group(1), m.group(2).strip()
        name = line.split(":")[0].strip()
        if name in eq:
            rows[module]["equivalent"] += 1
            continue
        rows[module][status] += 1
        if status in ("survived", "no tests"):
            survivors[module].append(name)
    table, figures = [], {}
    for module, c in sorted(rows.items()):
        total = sum(v for k, v in c.items() if k not in ("equivalent", "not checked"))
        score = c["killed"] / total if total else 1.0
        figures[module] = round(score, 3)
        table.append((module, total, c["killed"], c["survived"], c["no tests"], c["timeout"], c["equivalent"],
                      c["not checked"], score))
    print(f"{'module':32} {'mutants':>7} {'killed':>6} {'survived':>8} {'no tests':>8} {'timeout':>7} {'equiv.':>6} "
          f"{'not run':>7} {'score':>6}")
    for module, total, k, s, n, t, e, u, score in table:
        flag = "" if score >= TARGET else "  < target"
        print(f"{module:32} {total:7} {k:6} {s:8} {n:8} {t:7} {e:6} {u:7} {score:6.1%}{flag}")
    for module, names in sorted(survivors.items()):
        print(f"\n{module}: {len(names)} alive: " + ", ".join(n.rsplit('.', 1)[1] for n in names[:40])
              + (" ..." if len(names) > 40 else ""))
    print(json.dumps({"target": TARGET, "scores": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
