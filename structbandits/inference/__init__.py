"""Posteriors of the programs in ``structbandits.models`` given data.

Belongs here: closed forms (``conjugate``), approximations (Laplace, ensembles) and the NUTS
reference (``mcmc``), each a pure function of a prior and data. Does not belong here: decision
rules (``agents``), simulators (``envs``), or the model definitions themselves (``models``).
"""

from structbandits.inference.posterior import PosteriorResult, posterior

__all__ = ["PosteriorResult", "posterior"]
