"""Loaders of real data sets and the data files the package ships.

Belongs here: readers that return pandas objects from files on disk or inside installed wheels.
Nothing here downloads at run time; a missing data set raises an error that says how to get it.
Does not belong here: simulators built on the data (``envs``) or models fitted to it (``structure``).
"""
