"""Runs over models x units x conditions: the sweep, stored sweeps, tables, bundles, jobs,
report."""
