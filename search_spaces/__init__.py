"""What to sweep: declarative search spaces, by name.

A space is plain data: the **arms** (fixed combinations of architecture, loss,
normalization, penalty and possibly other fields) times the **hyperparameter axes**,
and the **search kind** (grid, random, bayesian). `expand` turns a grid or random
space into the list of trial dicts (each a valid `TrialConfig.from_dict` input);
Bayesian spaces are driven round by round by `study.sweep.bayes`.

    >>> import search_spaces
    >>> space = search_spaces.get("table1")
    >>> trials = search_spaces.expand(space, base={"dataset": "digits", "scale": "tiny"})
"""
from __future__ import annotations

from search_spaces import paper, tricks  # noqa: F401,E402  (register the shipped spaces)

# The types and functions (search_spaces.space), then the shipped spaces, which register themselves.
from search_spaces.space import (  # noqa: F401
    ABLATION_ARM_DEFAULTS,
    CONDITIONAL_ARM_DEFAULTS,
    SEARCH_KINDS,
    SPACES,
    WEIGHTED_PENALTIES,
    ArmFilterError,
    Choice,
    Range,
    Space,
    arm_name,
    expand,
    get,
    names,
    parse_arm_filter,
    sample_point,
    select_arms,
    trick_label,
)
