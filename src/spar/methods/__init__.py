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

from spar.registry import METHODS, REGISTRY, MethodName, methods_help

__all__ = ["METHODS", "REGISTRY", "MethodName", "methods_help", "get_method"]


def get_method(name: str):
    import importlib

    from spar.io import DataError

    if name not in REGISTRY:
        raise DataError(f"method must be one of {', '.join(METHODS)}, got {name!r}")
    module, attr, _ = REGISTRY[name]
    return getattr(importlib.import_module(module), attr)
