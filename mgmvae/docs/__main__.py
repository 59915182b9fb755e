"""``python -m mgmvae.docs``: take a snapshot, render the pages' regions, check them (docs/results.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mgmvae.config import ConfigError
from mgmvae.docs.pages import check_prose, check_regions, default_pages, render_pages
from mgmvae.docs.snapshot import SNAPSHOTS, SnapshotError, check_hashes, take_snapshot


def render(args: argparse.Namespace) -> None:
    changed = render_pages(args.pages, args.snapshots)
    print("\n".join(f"rendered {p}" for p in changed) or "every region is up to date")


def check(args: argparse.Namespace) -> int:
    problems = check_regions(args.pages, args.snapshots) + check_hashes(args.snapshots)
    problems += check_prose(args.pages, args.snapshots)
    print("\n".join(problems) or "the docs match their snapshots")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mgmvae.docs", description=__doc__)
    parser.add_argument("--snapshots", type=Path, default=SNAPSHOTS, help="the snapshots folder (with recipes.yaml)")
    parser.add_argument("--pages", type=Path, action="append", help="a page (repeat; default: README.md and docs/*.md)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("snapshot", help="copy a study's results into the snapshots folder with their provenance")
    p.add_argument("name", help="a snapshot declared in recipes.yaml")
    p.add_argument("--from", dest="study", type=Path, help="the results folder (default: the recipe's)")
    p.set_defaults(func=lambda args: print(f"wrote {take_snapshot(args.name, args.snapshots, args.study)}"))
    sub.add_parser("render", help="rewrite the generated regions of the pages").set_defaults(func=render)
    sub.add_parser("check", help="regions, config hashes and prose against the snapshots").set_defaults(func=check)
    args = parser.parse_args(argv)
    args.pages = args.pages or default_pages()
    try:
        return args.func(args) or 0  # render and snapshot return None: done
    except (SnapshotError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
