"""`emorec data prepare SOURCE ...`, `emorec data report [DIR]`, `emorec data distill --model M`."""
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
    prep.add_argument("--no-person-split", action="store_true",
                      help="split sources that name their people by image, not by person "
                           "(by default no person is in two splits)")
    add_config_arguments(prep)
    rep = sub.add_parser("report", help="counts of an existing split",
                         description="Print the per-split, per-class counts of a prepared split.")
    rep.add_argument("dir", nargs="?", help="split folder (default: config DATA_DIR)")
    add_config_arguments(rep)
    dis = sub.add_parser("distill", help="a teacher model's probabilities on train as votes.csv",
                         description="Write DATA_DIR/votes.csv from a trained model's (or ensemble's) "
                                     "flip-averaged probabilities on DATA_DIR/train, so that SOFT_LABELS "
                                     "training distils it into a student.")
    dis.add_argument("--model", required=True, help="teacher: ONNX model or checkpoint")
    dis.add_argument("--force", action="store_true", help="replace an existing votes.csv")
    add_config_arguments(dis)


def run(args) -> int:
    from emorec.cli import config_from_args
    from emorec.data import describe_split, format_report, prepare

    cfg = config_from_args(args)
    if args.data_command == "distill":
        from pathlib import Path

        from emorec.evaluation.distill import write_teacher_votes

        r = write_teacher_votes(cfg, Path(args.model), force=args.force)
        print(f"wrote {r['votes']}: {r['images']} training faces, classes {' '.join(r['classes'])}; "
              f"the teacher's top class equals the folder label on {r['teacher_agrees_with_labels']:.1%}")
        return 0
    if args.data_command == "report":
        print(describe_split(args.dir or cfg.data_dir))
        return 0
    if args.no_source_splits:
        cfg = cfg.with_overrides({"keep_source_splits": False})
    if args.no_person_split:
        cfg = cfg.with_overrides({"split_by_person": False})
    report = prepare(cfg, args.sources or None, args.out, force=args.force)
    print(format_report(report))
    return 0
