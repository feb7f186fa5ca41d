"""Experiments built from search and learning: the pipeline, scaling, diversity, sweeps, rounds, ensembles."""
