"""Structure learned from offline data: Gaussian mixtures over embeddings that become effect priors
and mixing weights, matrix factorisation of ratings, text embeddings and style scores.

Belongs here: estimators with a ``fit``/``transform`` shape that turn offline data into prior
hyperparameters. Does not belong here: online posteriors (``inference``) or data loading (``data``).
"""
