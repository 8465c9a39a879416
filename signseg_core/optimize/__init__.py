"""Preferred images: batched evolution, its pycma reference, the scorer, gradient visualization."""
