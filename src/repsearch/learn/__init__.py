"""Gradient training: the loop and its hooks, regression to searched targets, the SGD baseline, measurements."""
