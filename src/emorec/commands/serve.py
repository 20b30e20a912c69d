"""`emorec serve`: the REST API (FastAPI + uvicorn, extra ``[api]``)."""
from __future__ import annotations

from emorec.cli import add_config_arguments


def add_arguments(p) -> None:
    add_config_arguments(p)
    p.add_argument("--model", help="ONNX file or shipped model name: 5class (default) or 7class")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0: any free port)")
    p.add_argument("--detector", choices=["yunet", "haar", "none"], help="face detector (default: DETECTOR)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads per inference (default: ORT_THREADS)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted file (default 10)")
    p.add_argument("--max-batch", type=int, default=16, help="most files per /predict/batch (default 16)")
    p.add_argument("--max-concurrent", type=int, default=2,
                   help="requests decoding and inferring at once; more wait, then get 503 (default 2)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def run(args) -> int:
    from emorec.cli import config_from_args
    from emorec.errors import EmorecError, require

    require("fastapi", "api")
    require("python_multipart", "api")
    require("fastapi_offline", "api")
    uvicorn = require("uvicorn", "api")
    if not 0 <= args.port <= 65535:
        raise EmorecError(f"--port must be in 0..65535, got {args.port}")
    if args.max_upload_mb <= 0 or args.max_batch < 1 or args.max_concurrent < 1:
        raise EmorecError("--max-upload-mb must be positive, --max-batch and --max-concurrent at least 1")

    from emorec.api import create_app
    from emorec.inference.predictor import Predictor

    cfg = config_from_args(args)
    # Load before listening: a missing or broken model is one error line, not a failed startup.
    predictor = Predictor.from_config(cfg, args.model, detector=args.detector, threads=args.threads,
                                      check_classes=False)
    app = create_app(predictor, config=cfg, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                     max_batch_files=args.max_batch, max_concurrent=args.max_concurrent)
    print(f"emorec serve: model {predictor.model_path} ({', '.join(predictor.classes)}), "
          f"detector {predictor.detector_name}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
