"""`emorec export`: checkpoint -> ONNX fp32 + int8 with a parity check."""
from __future__ import annotations

from pathlib import Path

from emorec.cli import add_config_arguments, config_from_args, explicit_settings, tune_malloc


def add_arguments(p) -> None:
    p.epilog = ("The model's settings come from its checkpoint; the export keys (FACE_MARGIN, SOURCE_SIZE, "
                "INT8_CALIBRATION, INT8_CALIB_IMAGES), when named by --config or --set, replace the checkpoint's.")
    add_config_arguments(p)
    p.add_argument("--checkpoint", nargs="+", help="trained checkpoint (default: MODELS_DIR/best_model.pt); "
                   "several: one ONNX model averaging their probabilities over the first one's classes")
    p.add_argument("--mix", type=float, nargs="+", metavar="W", help="one network of the checkpoints' weights "
                   "mixed, instead of their ensemble: with two checkpoints and one W, (1 - W) x the first's + W x "
                   "the second's (WiSE-FT); otherwise one W per checkpoint, summing to 1 (a model soup)")
    p.add_argument("--out", help="ONNX path (default: the checkpoint's, with .onnx; in its run folder)")
    p.add_argument("--force", action="store_true", help="replace a shipped model in models/ (an explicit act)")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 model")
    p.add_argument("--tta-flip", action="store_true", help="average each face with its mirror image inside "
                   "the model (twice the compute)")
    p.add_argument("--classes", help="comma-separated: a model of only these of the checkpoint's classes "
                   "(its logits of them, softmaxed on their own)")
    p.add_argument("--data-dir", help="split used for calibration and parity (default: the checkpoint's)")
    p.add_argument("--metrics", help="metrics.json to embed (default: REPORTS_DIR/metrics.json if present)")


def run(args) -> int:
    cfg = config_from_args(args)
    tune_malloc(args)
    from emorec.errors import require

    require("torch", "train")
    require("onnx", "train")
    from emorec.export import export

    ckpt = [Path(c) for c in args.checkpoint] if args.checkpoint else [Path(cfg.models_dir) / "best_model.pt"]
    out = Path(args.out) if args.out else ckpt[0].with_suffix(".onnx")
    _check_not_shipped(out, args.force, not args.no_int8)
    metrics = Path(args.metrics) if args.metrics else Path(cfg.reports_dir) / "metrics.json"
    r = export(ckpt, out, int8=not args.no_int8,
               data_dir=Path(args.data_dir) if args.data_dir else None, metrics_json=metrics, tta_flip=args.tta_flip,
               settings=explicit_settings(args, cfg, "export"), mix=args.mix,
               classes=[c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None)
    par = r["parity"]
    print(f"wrote {r['onnx']} ({r['size_mb']} MB)")
    print(f"parity on {par['images']} test faces: max |dprob| {par['max_abs_prob_diff']:.2e}, "
          f"top-1 agreement {par['top1_agreement']:.2%}, accuracy torch {par['acc_torch']:.4f} / onnx {par['acc_onnx_fp32']:.4f}")
    if "int8" in r:
        q = r["int8"]
        print(f"wrote {q['onnx']} ({q['size_mb']} MB): accuracy {q['acc_int8']:.4f} "
              f"(drop {q['acc_drop_vs_fp32']:+.4f} vs fp32), top-1 agreement {q['top1_agreement_vs_fp32']:.2%}")
    return 0


def _check_not_shipped(out: Path, force: bool, int8: bool) -> None:
    """Refuse to overwrite a file in the shipped models folder unless --force."""
    from emorec.config import SHIPPED_MODELS_DIR
    from emorec.errors import EmorecError

    written = [out, out.with_suffix(".json")] + ([out.with_name(out.stem + ".int8.onnx")] if int8 else [])
    hit = [p for p in written if p.absolute().parent == SHIPPED_MODELS_DIR and p.exists()]
    if hit and not force:
        raise EmorecError(f"{hit[0]} is a shipped model file; export to a run folder, "
                          "or replace it on purpose with --force")
