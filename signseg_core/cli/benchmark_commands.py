"""CLI parsers and bodies for the benchmarks commands (to be filled)."""

from __future__ import annotations

import argparse


def add_benchmarks_parser(sub: argparse._SubParsersAction) -> None:
    """Add the benchmarks commands to ``sub``."""
