"""`emorec evaluate`: test metrics, classification report, confusion matrix."""
from __future__ import annotations

import sys
from pathlib import Path

from emorec.cli import add_config_arguments, config_from_args, tune_malloc


def add_arguments(p) -> None:
    add_config_arguments(p)
    p.add_argument("--model", help="checkpoint (.pt), ONNX model or shipped model name (5class, 7class) "
                                   "(default: MODELS_DIR/best_model.pt; with --photos the shipped 5class)")
    p.add_argument("--photos", metavar="SOURCE",
                   help="score labelled whole photos (class folders, or a CSV label file; folder or zip) "
                        "through the face detector, as `emorec predict` does; faces not found count as errors")
    p.add_argument("--suite", metavar="FILE",
                   help="score the model on every set of a validation suite (benchmarks/suite.yaml): accuracy, "
                        "macro-F1 and recall per set, domain means, and a paired test against --baseline")
    p.add_argument("--baseline", help="with --suite: the model to compare against (e.g. 7class)")
    p.add_argument("--split", default="test", help="split of DATA_DIR to evaluate (default: test)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: average with the flipped face")
    p.add_argument("--out", help="report folder (default: REPORTS_DIR; with --photos REPORTS_DIR/photos, "
                                 "with --suite REPORTS_DIR/suite, so that no report overwrites another)")
    p.add_argument("--store", action="store_true",
                   help="store the metrics in the evaluated ONNX model's metadata (shown by the app and the API)")


def run(args) -> int:
    cfg = config_from_args(args)
    tune_malloc(args)
    from emorec.errors import require

    require("sklearn", "train")
    from emorec.evaluation.evaluate import run_evaluation

    from emorec.inference.predictor import resolve_model

    if args.photos:
        return _photos(cfg, args)
    if args.suite:
        return _suite(cfg, args)
    model = resolve_model(args.model) if args.model else Path(cfg.models_dir) / "best_model.pt"
    if args.store and model.suffix != ".onnx":
        from emorec.errors import EmorecError

        raise EmorecError(f"--store writes ONNX metadata; {model} is not an .onnx model")
    r = run_evaluation(cfg, model, args.split, Path(args.out) if args.out else None, tta_flip=args.tta or None)
    print(r["report_text"])
    line = f"accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}  ({r['n']} images, {r['seconds']:.1f} s)"
    if "leakage_clean" in r:
        lc = r["leakage_clean"]
        line += f"\nleakage-clean: accuracy {lc['accuracy']:.4f}  macro-F1 {lc['macro_f1']:.4f}  ({lc['n']} images)"
    print(line)
    out = Path(args.out) if args.out else Path(cfg.reports_dir)
    print(f"wrote {out / 'metrics.json'}, {out / 'classification_report.txt'}, {out / 'confusion_matrix.png'}")
    if args.store:
        from emorec.export import store_metrics

        store_metrics(model, r)
        print(f"stored accuracy {r['accuracy']:.4f} in {model}'s metadata")
    return 0


def _photos(cfg, args) -> int:
    from emorec.errors import EmorecError
    from emorec.evaluation.evaluate import PHOTOS_REPORTS, evaluate_photos

    if args.model and Path(args.model).suffix == ".pt":
        raise EmorecError("--photos scores an ONNX model on the predict path; export the checkpoint first")
    if args.store or args.tta:
        raise EmorecError("--store and --tta apply to split evaluation, not to --photos")
    r = evaluate_photos(cfg, args.model, args.photos, Path(args.out) if args.out else None)
    for msg in r["unreadable"]:  # one line each; the rest of the photos are scored
        print(f"emorec evaluate: skipped {msg}", file=sys.stderr)
    print(r["report_text"])
    recall = "  ".join(f"{c} {v['recall']:.3f}" for c, v in r["per_class"].items())
    print(f"accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}  ({r['n']} photos, "
          f"no face found in {r['no_face']}, {len(r['unreadable'])} unreadable, {r['seconds']:.1f} s)")
    print(f"recall: {recall}")
    out = Path(args.out) if args.out else Path(cfg.reports_dir) / PHOTOS_REPORTS
    print(f"wrote {out / 'metrics.json'}, {out / 'classification_report.txt'}, {out / 'confusion_matrix.png'}, "
          f"{out / 'predictions.csv'}")
    return 0


def _suite(cfg, args) -> int:
    import json

    from emorec.errors import EmorecError
    from emorec.evaluation.suite import format_suite, read_suite, run_suite
    from emorec.files import write_text
    from emorec.inference.predictor import resolve_model

    if not args.model:
        raise EmorecError("--suite needs --model (an .onnx file or a shipped model name)")
    sets = read_suite(args.suite)
    model = resolve_model(args.model)
    baseline = resolve_model(args.baseline) if args.baseline else None
    out = Path(args.out) if args.out else Path(cfg.reports_dir) / "suite"
    r = run_suite(cfg, sets, model, baseline, out)
    text = format_suite(r)
    print(text)
    write_text(out / "suite.json", json.dumps(r, indent=2))
    write_text(out / "suite.md", text + "\n")
    print(f"wrote {out / 'suite.json'}, {out / 'suite.md'}")
    return 0
