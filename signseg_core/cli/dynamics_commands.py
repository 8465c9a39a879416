"""CLI parsers and bodies for the dynamics commands (to be filled)."""

from __future__ import annotations

import argparse


def add_dynamics_parser(sub: argparse._SubParsersAction) -> None:
    """Add the dynamics commands to ``sub``."""
