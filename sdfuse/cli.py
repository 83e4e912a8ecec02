"""The ``sdfuse`` command: reproduce the tables, pre-fill the feature cache, build smoke assets."""
from __future__ import annotations

import argparse
import ast
import logging
import sys

from .errors import SdfuseError


def _parse_params(items: list[str]) -> dict:
    """``key=value`` pairs; values are Python literals when they parse as such, else strings."""
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SdfuseError(f"parameter {item!r} is not key=value (e.g. -p pairs_per_category=0)")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def cmd_reproduce(args) -> int:
    from .runner import reproduce

    only = [name.strip() for name in args.only.split(",")] if args.only else None
    runs = reproduce(args.profile, only=only, parameters=_parse_params(args.param), root=args.root)
    for run in runs:
        print(f"{run.status:7s} {run.notebook}  ({run.wall_time_s:.1f} s){'  ' + run.error if run.error else ''}")
    failed = [r.notebook for r in runs if r.status != "ok"]
    if failed:
        print(f"failed: {', '.join(failed)} (the executed notebooks in book/tables/ show the failing cell)",
              file=sys.stderr)
        return 1
    return 0


def cmd_extract(args) -> int:
    import inspect

    from .errors import ConfigError
    from .profiles import resolve

    params = _parse_params(args.param)
    unknown = sorted(set(params) - set(inspect.signature(resolve).parameters) - {"profile"})
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown}; see help(sdfuse.profiles.resolve)")
    run = resolve(args.profile, **params)
    pairs = run.spair_pairs()
    images = sorted({p.src_image for p in pairs} | {p.trg_image for p in pairs})
    sd_done = run.sd_features.prefill(images)
    dino_done = run.dino_features.prefill(images)
    print(f"{len(images)} images: extracted SD {sd_done}, DINOv2 {dino_done}; "
          f"the rest were already cached in {run.cache_dir}")
    return 0


def cmd_make_smoke(args) -> int:
    from .profiles import sdfuse_home
    from .smoke import ensure_smoke_assets

    root = ensure_smoke_assets(args.root or sdfuse_home() / "smoke")
    print(f"smoke models and data in {root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdfuse", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser("reproduce", help="run the table notebooks with papermill into the book")
    rep.add_argument("--profile", default="smoke", choices=["smoke", "paper"])
    rep.add_argument("--only", help="comma-separated notebook names, e.g. table1")
    rep.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                     help="notebook parameter, e.g. -p pairs_per_category=0 (repeatable)")
    rep.add_argument("--root", default=".", help="book source root (default: current folder)")
    rep.set_defaults(func=cmd_reproduce)

    ext = sub.add_parser("extract", help="pre-fill the feature cache for the SPair-71k pairs of a profile")
    ext.add_argument("--profile", default="smoke", choices=["smoke", "paper"])
    ext.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                     help="profile override, e.g. -p data_root=/data/SPair-71k -p device=cuda")
    ext.set_defaults(func=cmd_extract)

    data = sub.add_parser("data", help="datasets and fixtures")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    smoke = data_sub.add_parser("make-smoke", help="write the smoke profile's tiny models and synthetic data")
    smoke.add_argument("--root", help="target folder (default: $SDFUSE_HOME/smoke)")
    smoke.set_defaults(func=cmd_make_smoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except SdfuseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
