"""Two refiners on the same held-out breaks, head to head: how many breaks only the first repaired,
how many only the second, and the exact McNemar p-value of the difference (spar.compare).

    python experiments/repairs_mcnemar.py OLD-heldout-repairs.jsonl NEW-heldout-repairs.jsonl
"""

import json
import sys

from spar.compare import mcnemar_exact


def solved(path: str) -> dict[str, bool]:
    return {t["id"]: bool(t["solved"]) for t in map(json.loads, open(path))}


def main(a: str, b: str) -> None:
    x, y = solved(a), solved(b)
    if set(x) != set(y):
        sys.exit(f"the two files hold different breaks ({len(set(x) ^ set(y))} not in both)")
    only_a = sum(x[k] and not y[k] for k in x)
    only_b = sum(y[k] and not x[k] for k in x)
    out = {"breaks": len(x), "repaired_a": sum(x.values()), "repaired_b": sum(y.values()), "only_a": only_a,
           "only_b": only_b, "p_exact_mcnemar": round(mcnemar_exact(only_a, only_b), 4)}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
