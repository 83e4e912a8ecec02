"""The ``sdfuse`` command: reproduce the tables, pre-fill the feature cache, build smoke assets."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .errors import SdfuseError, Terminated

RESUME = ("finished feature-cache entries, results files and pages are complete (they are written atomically); "
          "run the same command again to resume")


def cmd_reproduce(args) -> int:
    from .profiles.parameters import parse_assignments
    from .book.runner import book_root, plan, reproduce

    only = [name.strip() for name in args.only.split(",")] if args.only is not None else None
    parameters = parse_assignments(args.param)
    book_root(args.root)
    if args.dry_run:
        for stem, params in plan(args.profile, only=only, parameters=parameters).items():
            print(f"would run {stem}" + "".join(f" -p {key}={value!r}" for key, value in params.items()))
        return 0
    def report(run) -> None:
        print(f"{run.status:7s} {run.notebook}  ({run.wall_time_s:.1f} s){'  ' + run.error if run.error else ''}",
              flush=True)

    runs = reproduce(args.profile, only=only, parameters=parameters, root=args.root, on_done=report)
    failed = [r.notebook for r in runs if r.status != "ok"]
    if failed:
        print(f"failed: {', '.join(failed)}; the book still builds, and their pages show the failing cell",
              file=sys.stderr)
        return 1
    return 0


def cmd_extract(args) -> int:
    from .profiles.parameters import check_values, parse_assignments

    params = check_values(parse_assignments(args.param))
    if args.dry_run:
        print(f"would extract the SPair-71k images of the {args.profile} profile with "
              + (", ".join(f"{key}={value!r}" for key, value in params.items()) or "its defaults"))
        return 0
    from .profiles.runs import resolve
    from .features.shard import distributed, shard_images

    run = resolve(args.profile, **params)
    pairs = run.spair_pairs()
    images = sorted({p.src_image for p in pairs} | {p.trg_image for p in pairs})
    with distributed() as (rank, world_size):  # under torchrun: this rank's slice, barrier at the end
        mine = shard_images(images, rank, world_size)
        sd_done = run.sd_features.prefill(mine)
        dino_done = run.dino_features.prefill(mine)
    share = f"rank {rank}/{world_size}: {len(mine)} of " if world_size > 1 else ""
    print(f"{share}{len(images)} images: extracted SD {sd_done}, DINOv2 {dino_done}; "
          f"the rest were already cached in {run.cache_dir}")
    return 0


def cmd_make_assets(args) -> int:
    from .profiles.assets import ensure_assets
    from .profiles.parameters import ROOT_OPTION
    from .data.paths import sdfuse_home

    root = ensure_assets(args.profile, ROOT_OPTION.check(args.root) if args.root else sdfuse_home() / args.profile)
    print(f"{args.profile} models and data in {root}")
    return 0


def _data_root(args) -> "Path":
    """``--root`` as a path, else the data home ($SDFUSE_DATA)."""
    from pathlib import Path

    from .profiles.parameters import ROOT_OPTION
    from .data.paths import data_home

    if args.root is not None:
        return Path(ROOT_OPTION.check(args.root))
    return Path(ROOT_OPTION.check(str(data_home())))


def cmd_data_list(args) -> int:
    from .data.datastore import fetch_command, statuses
    from .data.manifests import display_path

    root = _data_root(args)
    rows = statuses(root)
    width = max([len(row.name) for row in rows] + [4])
    print(f"data root: {root}")
    print(f"{'name':{width}s}  {'kind':7s}  {'state':10s}  where")
    for row in rows:
        print(f"{row.name:{width}s}  {row.kind:7s}  {row.state:10s}  {row.where}")
        if row.state != "present":
            how = fetch_command(row.name, root) if row.kind == "dataset" else f"see {display_path(row.name)}"
            print(f"{'':{width}s}  get it: {how}")
    return 0


def cmd_data_fetch(args) -> int:
    from .data.datastore import fetch
    from .data.manifests import load_manifest
    from .profiles.parameters import MIRROR_OPTION

    root = _data_root(args)
    mirror = MIRROR_OPTION.check(args.mirror)
    load_manifest(args.name)                                       # an unknown name fails before any write
    for checked in fetch(args.name, root, mirror=mirror):
        print(f"{checked.archive}: sha256 {checked.sha256} ({checked.trust})")
    print(f"{args.name} is ready under {root}; layout ok")
    return 0


def cmd_data_verify(args) -> int:
    from .data.datastore import verify

    report = verify(args.name, _data_root(args))
    for note in report.notes:
        print(f"note: {note}")
    if report.ok:
        print(f"{args.name}: ok ({report.where})")
        return 0
    print(f"{args.name}: {len(report.problems)} problem(s) in {report.where}")
    for problem in report.problems:
        print(f"  - {problem}")
    if report.fix:
        print(f"to repair: {report.fix}")
    return 1


def cmd_match(args) -> int:
    import json

    from .api import correspondence, grid_points, parse_points, smoke_hint
    from .profiles.parameters import PICTURE_OPTION, parse_assignments
    from .book.viz import picture_format, save_picture

    picture_format(PICTURE_OPTION.check(args.out))
    points = parse_points(args.points) if args.points is not None else None
    pair = correspondence(args.a, args.b, alpha=args.alpha, profile=args.profile,
                          **{"progress": True, **parse_assignments(args.param)})
    points = grid_points(pair.pair.src_size) if points is None else points
    with smoke_hint(f"sdfuse match {args.a} {args.b} --profile smoke"):
        predicted = pair.points(points)
        picture = pair.picture(points, predicted, dense=args.dense)
    save_picture(picture, args.out)
    record = pair.record(points, predicted, picture=args.out)
    if args.json:
        print(json.dumps(record, indent=1))
    else:
        print("a_x,a_y,b_x,b_y")
        for point in record["points"]:
            print(",".join(f"{v:.2f}" for v in point["a"] + point["b"]))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors read ``error: …`` as every other error, with the help command to type."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sdfuse", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    from .profiles.parameters import PROFILES

    profile_help = "smoke (tiny models, default), rehearsal (real architectures, random weights) or paper"
    rep = sub.add_parser("reproduce", help="run the table notebooks with papermill into the book")
    rep.add_argument("--profile", default="smoke", choices=list(PROFILES), help=profile_help)
    rep.add_argument("--only", help="comma-separated notebook names, e.g. table1")
    rep.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                     help="notebook parameter, e.g. -p pairs_per_category=0 (repeatable)")
    rep.add_argument("--root", default=".", help="book source root (default: current folder)")
    rep.add_argument("--dry-run", action="store_true", help="check the parameters and list what would run")
    rep.set_defaults(func=cmd_reproduce)

    ext = sub.add_parser("extract", help="pre-fill the feature cache for the SPair-71k pairs of a profile")
    ext.add_argument("--profile", default="smoke", choices=list(PROFILES), help=profile_help)
    ext.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                     help="run parameter, e.g. -p data_root=/data/SPair-71k -p device=cuda")
    ext.add_argument("--dry-run", action="store_true", help="check the parameters without extracting")
    ext.set_defaults(func=cmd_extract)

    mat = sub.add_parser("match", help="where points of image A land in image B, printed and drawn",
                         description="Match points of image A in image B with the paper's fused SD + DINOv2 "
                                     "features; prints A's points and B's predictions (pixels), writes a picture.")
    mat.add_argument("a", help="image A (the points are its pixels)")
    mat.add_argument("b", help="image B")
    mat.add_argument("--points", metavar='"X,Y;X,Y"', help="points of A in pixels, e.g. \"120,80;200,150\" "
                                                          "(default: a 4×4 lattice over A)")
    mat.add_argument("--dense", action="store_true", help="also draw every cell's match: the colour map and B "
                                                          "rebuilt from A's patches (supp. Fig. 1)")
    mat.add_argument("--alpha", type=float, default=0.5, help="fusion weight on SD, in [0, 1] (default 0.5)")
    mat.add_argument("--profile", choices=list(PROFILES), help="paper (the real weights; the default), rehearsal "
                                                               "or smoke (tiny random models, to try the command)")
    mat.add_argument("--out", default="match.png", help="picture to write (default: match.png)")
    mat.add_argument("--json", action="store_true", help="print JSON (images, settings, points) instead of CSV")
    mat.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                     help="run parameter, e.g. -p device=cuda -p grid=60 -p sd_model=/path (repeatable)")
    mat.set_defaults(func=cmd_match)

    data = sub.add_parser("data", help="datasets and fixtures")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    for name, what in (("smoke", "tiny models"), ("rehearsal", "real-size random models (about 4.6 GB)")):
        make = data_sub.add_parser(f"make-{name}", help=f"write the {name} profile's {what} and synthetic data")
        make.add_argument("--root", help=f"target folder (default: $SDFUSE_HOME/{name})")
        make.set_defaults(func=cmd_make_assets, profile=name)
    root_help = "data root (default: $SDFUSE_DATA, else $SDFUSE_HOME/data)"
    listing = data_sub.add_parser("list", help="every manifest (data_manifests/ or $SDFUSE_MANIFESTS): "
                                               "kind, present or not, where")
    listing.add_argument("--root", help=root_help)
    listing.set_defaults(func=cmd_data_list)
    fetch = data_sub.add_parser("fetch", help="download (resumable), checksum, unpack and layout-check a dataset")
    fetch.add_argument("name", help="manifest name, e.g. spair71k (see: sdfuse data list)")
    fetch.add_argument("--root", help=root_help)
    fetch.add_argument("--mirror", metavar="URL", help="base URL serving the archives by file name, tried before "
                                                       "the manifest's URLs (default: $SDFUSE_DATA_MIRROR)")
    fetch.set_defaults(func=cmd_data_fetch)
    check = data_sub.add_parser("verify", help="check a dataset's layout, counts and archive checksums "
                                               "(exit 0 only when all hold)")
    check.add_argument("name", help="manifest name, e.g. spair71k")
    check.add_argument("--root", help=root_help)
    check.set_defaults(func=cmd_data_verify)
    return parser


class _Formatter(logging.Formatter):
    """``warning: message`` (lower case, as ``error:``); info lines bare."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit 2 with ``error: …`` for anything wrong it was given, 130 on Ctrl-C, 143 on SIGTERM."""
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_Formatter())
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None  # unwinds as Ctrl-C does
    try:
        return args.func(args)
    except SdfuseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"terminated (SIGTERM): {RESUME}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"interrupted: {RESUME}", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
