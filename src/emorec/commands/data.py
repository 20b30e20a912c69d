"""`emorec data prepare SOURCE ...` and `emorec data report [DIR]`."""
from __future__ import annotations

from emorec.cli import add_config_arguments


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    prep = sub.add_parser(
        "prepare", help="merge sources into <out>/{train,val,test}/<class>/",
        description="Merge datasets (folders, zips, kaggle:owner/name, kaggle:all) into one "
                    "deduplicated, stratified split with manifest.csv and data_report.json.")
    prep.add_argument("sources", nargs="*", metavar="SOURCE",
                      help="folder, .zip or kaggle:owner/name (default: config SOURCES)")
    prep.add_argument("--out", help="output folder (default: config DATA_DIR, data_split/)")
    prep.add_argument("--force", action="store_true", help="replace an existing split in the output folder")
    prep.add_argument("--no-source-splits", action="store_true",
                      help="ignore the sources' own train/val/test splits; split everything by fractions")
    add_config_arguments(prep)
    rep = sub.add_parser("report", help="counts of an existing split",
                         description="Print the per-split, per-class counts of a prepared split.")
    rep.add_argument("dir", nargs="?", help="split folder (default: config DATA_DIR)")
    add_config_arguments(rep)


def run(args) -> int:
    from emorec.cli import config_from_args
    from emorec.data import describe_split, format_report, prepare

    cfg = config_from_args(args)
    if args.data_command == "report":
        print(describe_split(args.dir or cfg.data_dir))
        return 0
    if args.no_source_splits:
        cfg = cfg.with_overrides({"keep_source_splits": False})
    report = prepare(cfg, args.sources or None, args.out, force=args.force)
    print(format_report(report))
    return 0
