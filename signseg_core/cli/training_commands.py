"""CLI parsers and bodies for the training commands (to be filled)."""

from __future__ import annotations

import argparse


def add_training_parser(sub: argparse._SubParsersAction) -> None:
    """Add the training commands to ``sub``."""
