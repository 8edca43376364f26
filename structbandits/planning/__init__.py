"""Restless-bandit planning: value iteration, Whittle indices, Lagrangian bounds and equitable
budget allocation across groups, vectorised over arms.

Belongs here: planners that map known (or sampled) transition models to indices, values and
allocations. Does not belong here: learning the transitions (``inference``) or simulating arms (``envs``).
"""
