"""How many tokens a refiner writes per bootstrap example, as a rewrite and as edit operations:
reads refiner SFT rows in the rewrite format (``spar bootstrap refiner``), writes each target also
as the operations that restore it (spar.roles.edits.ops_between), checks that they do, and counts
both with the embedded model's tokenizer.

    python experiments/edit_tokens.py [ROWS] [--out results/smollm2-135m/refine-format/target-tokens.json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from spar.io import iter_json_lines, write_text
from spar.roles import edits as E
from spar.roles.templates import END, START

ROWS = Path("results/smollm2-135m/methods/spar/iter_0/bootstrap.jsonl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", type=Path, nargs="?", default=ROWS)
    ap.add_argument("--out", type=Path, default=Path("results/smollm2-135m/refine-format/target-tokens.json"))
    a = ap.parse_args()
    from transformers import AutoTokenizer

    from spar.llm.embedded import packaged_model_path

    tok = AutoTokenizer.from_pretrained(packaged_model_path("embedded"))
    rewrite, edits = [], []
    for lineno, row in iter_json_lines(a.rows):
        if row.get("origin", {}).get("kind") != "refinement":
            continue
        broken = re.search(r"\[Response\]\n(.*?)\n\nFirst say", row["messages"][1]["content"], re.S).group(1)
        reply = row["messages"][-1]["content"]
        original = reply.split(START + "\n", 1)[1].rsplit("\n" + END, 1)[0]
        ops = E.render(E.ops_between(broken, original))
        if E.refine(broken, ops) != original:
            raise SystemExit(f"{a.rows}:{lineno}: the operations do not restore the original")
        rewrite.append(len(tok(reply)["input_ids"]))
        edits.append(len(tok(ops)["input_ids"]))
    fig = {"rows": str(a.rows), "examples": len(rewrite),
           "rewrite": {"mean": round(statistics.fmean(rewrite), 1), "median": statistics.median(rewrite)},
           "edits": {"mean": round(statistics.fmean(edits), 1), "median": statistics.median(edits)}}
    write_text(a.out, json.dumps(fig, indent=1) + "\n")
    print(f"{'target':<8} {'mean':>6} {'median':>6}   ({fig['examples']} examples)")
    for k in ("rewrite", "edits"):
        print(f"{k:<8} {fig[k]['mean']:>6} {fig[k]['median']:>6}")
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
