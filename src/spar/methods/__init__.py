"""Methods as declared lists of stages (``spar.pipeline.Method``): SPaR and the baselines it is
compared with, on the same prompts, sampling, judge and trainers.

- ``spar``: sample -> judge -> negatives -> tree search -> DPO pairs + RFT rows -> train actor
  (DPO) and refiner (SFT); optional iteration-0 bootstrap of the refiner.
- ``self_rewarding``: sample -> 5-point self-judgment (averaged samples) -> highest vs lowest -> DPO.
- ``meta_rewarding``: Self-Rewarding's actor pairs with length control, plus judge pairs from a
  pairwise meta-judge, in the same DPO run.
- ``self``: sample -> self-feedback -> one self-refinement -> re-judge -> SFT on accepted refinements.
- ``autoif``: instructions -> verifier functions + cases -> cross-validation (in the sandbox) ->
  back-translation -> queries -> responses -> execution feedback -> DPO pairs.
- ``rlvr``: GRPO on the training prompts with the constraint checkers as reward (TRL), no judge and
  no pairs: the on-policy baseline for verifiable instruction following.
"""

from __future__ import annotations

METHODS = ("spar", "self_rewarding", "meta_rewarding", "self", "autoif", "rlvr")


def get_method(name: str):
    from spar.io import DataError

    if name == "spar":
        from spar.methods.spar import METHOD
    elif name in ("self_rewarding", "meta_rewarding"):
        from spar.methods.rewarding import META_REWARDING, SELF_REWARDING

        METHOD = SELF_REWARDING if name == "self_rewarding" else META_REWARDING
    elif name == "self":
        from spar.methods.self_refine import METHOD
    elif name == "autoif":
        from spar.methods.autoif import METHOD
    elif name == "rlvr":
        from spar.methods.rlvr import METHOD
    else:
        raise DataError(f"method must be one of {', '.join(METHODS)}, got {name!r}")
    return METHOD
