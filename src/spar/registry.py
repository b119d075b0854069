"""The one registry of methods (a leaf module: the config, the CLI and `spar.methods` read it)."""

from __future__ import annotations

from typing import Literal

# The one registry of methods: name -> (module, attribute, one line for --help). The config's
# `method:` field, `spar iterate --method`'s choices and its help are all derived from it.
REGISTRY: dict[str, tuple[str, str, str]] = {
    "spar": ("spar.methods.spar", "METHOD", "self-play with tree-search refinement (the default)"),
    "self_rewarding": ("spar.methods.rewarding", "SELF_REWARDING", "5-point self-judgment, best vs worst answer, DPO"),
    "meta_rewarding": ("spar.methods.rewarding", "META_REWARDING", "Self-Rewarding plus a meta-judge's judge pairs"),
    "self": ("spar.methods.self_refine", "METHOD", "self-feedback and one self-refinement, SFT"),
    "autoif": ("spar.methods.autoif", "METHOD", "verifier functions run in the sandbox, execution feedback, DPO"),
    "rlvr": ("spar.methods.rlvr", "METHOD", "GRPO with the constraint checkers as reward"),
}
METHODS = tuple(REGISTRY)
MethodName = Literal[METHODS]  # type: ignore[valid-type]  (built from the registry)


def methods_help() -> str:
    return "; ".join(f"{name}: {line}" for name, (_, _, line) in REGISTRY.items())
