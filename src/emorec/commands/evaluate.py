"""`emorec evaluate`: test metrics, classification report, confusion matrix."""
from __future__ import annotations

from pathlib import Path

from emorec.cli import add_config_arguments, config_from_args, tune_malloc


def add_arguments(p) -> None:
    add_config_arguments(p)
    p.add_argument("--model", help="checkpoint (.pt) or ONNX model (default: MODELS_DIR/best_model.pt)")
    p.add_argument("--split", default="test", help="split of DATA_DIR to evaluate (default: test)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: average with the flipped face")
    p.add_argument("--out", help="report folder (default: REPORTS_DIR)")
    p.add_argument("--store", action="store_true",
                   help="store the metrics in the evaluated ONNX model's metadata (shown by the app and the API)")


def run(args) -> int:
    cfg = config_from_args(args)
    tune_malloc(args)
    from emorec.errors import require

    require("sklearn", "train")
    from emorec.evaluate import run_evaluation

    model = Path(args.model) if args.model else Path(cfg.models_dir) / "best_model.pt"
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
