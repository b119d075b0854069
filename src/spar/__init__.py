"""spar: self-play with tree-search refinement for instruction following."""

__version__ = "0.1.0"
