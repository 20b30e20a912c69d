"""REST API under load on loopback: throughput, latency percentiles and the server's memory.

    python benchmarks/api_load.py [--model 5class] [--requests 60] [--clients 1 8 32]

Starts `emorec serve` on a free loopback port (default limits: 10 MB uploads, 2 requests
inferring at once), then for each client count sends that many concurrent request streams, in
two mixes, each against a fresh server:
- JPEG: mostly single photos (examples/multi_face.jpg), every 5th a 7000x7000 JPEG, every 7th a
  batch of 4 such JPEGs;
- PNG: mostly single photos, every 3rd a 4000x3000 RGB PNG (decoded whole), every 5th a
  7000x7000 16-bit PNG and every 7th a 7000x7000 palette PNG (both over the limit for images
  other than JPEG: refused before decoding, 413).
Records status counts, requests/s, p50/p95/p99 latency, the server's peak RSS (VmHWM) and its
RSS after 5 s idle. Writes benchmarks/api_load.md.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "multi_face.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def big_jpeg(side: int = 7000) -> bytes:
    img = Image.open(PHOTO).convert("RGB").resize((side, side), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def pngs() -> dict[str, bytes]:
    """A 4000x3000 RGB photo, and 7000x7000 16-bit and palette images (small files, huge decodes)."""
    out = {}
    photo = Image.open(PHOTO).convert("RGB")
    for name, img in (("rgb_12mp.png", photo.resize((4000, 3000), Image.BILINEAR)),
                      ("gray16_49mp.png", Image.fromarray(np.tile(np.linspace(0, 65535, 7000, dtype=np.uint16),
                                                                    (7000, 1)))),
                      ("palette_49mp.png", photo.resize((7000, 7000), Image.NEAREST).quantize(64))):
        buf = io.BytesIO()
        img.save(buf, "PNG", compress_level=6)
        out[name] = buf.getvalue()
    return out


def request(client: httpx.Client, i: int, mix: str, small: bytes, big: bytes, png: dict) -> tuple[int, float]:
    t0 = time.perf_counter()
    if mix == "png":
        name = ("palette_49mp.png" if i % 7 == 6 else "gray16_49mp.png" if i % 5 == 4
                else "rgb_12mp.png" if i % 3 == 2 else None)
        data, kind = (png[name], "image/png") if name else (small, "image/jpeg")
        r = client.post("/predict", files={"file": (name or "photo.jpg", data, kind)})
    elif i % 7 == 6:
        files = [("files", (f"b{k}.jpg", big, "image/jpeg")) for k in range(4)]
        r = client.post("/predict/batch", files=files)
    else:
        data, name = (big, "big.jpg") if i % 5 == 4 else (small, "photo.jpg")
        r = client.post("/predict", files={"file": (name, data, "image/jpeg")})
    return r.status_code, time.perf_counter() - t0


def level(base: str, clients: int, total: int, mix: str, small: bytes, big: bytes, png: dict) -> dict:
    def stream(k: int) -> list[tuple[int, float]]:
        with httpx.Client(base_url=base, timeout=120) as c:
            return [request(c, i, mix, small, big, png) for i in range(k, total, clients)]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(stream, range(clients)) for r in rs]
    wall = time.perf_counter() - t0
    ok = [t for s, t in results if s == 200]
    pct = np.percentile(ok, [50, 95, 99]) * 1000 if ok else [float("nan")] * 3
    return {"clients": clients, "requests": len(results), "status": Counter(s for s, _ in results),
            "per_s": len(ok) / wall, "p50": pct[0], "p95": pct[1], "p99": pct[2]}


def serve_and_load(args, mix: str, small: bytes, big: bytes, png: dict) -> tuple[list[dict], tuple[int, int, int]]:
    port = free_port()
    env = {**os.environ, "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", "")}
    server = subprocess.Popen([sys.executable, "-m", "emorec", "serve", "--model", args.model, "--port", str(port),
                               "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        start_rss = rss_kb(server.pid, "VmRSS")
        rows = [level(base, c, args.requests, mix, small, big, png) for c in args.clients]
        peak = rss_kb(server.pid, "VmHWM")
        time.sleep(5)
        idle = rss_kb(server.pid, "VmRSS")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows, (start_rss, peak, idle)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="5class")
    ap.add_argument("--requests", type=int, default=60, help="requests per client level")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "api_load.md"))
    args = ap.parse_args()

    small, big, png = PHOTO.read_bytes(), big_jpeg(), pngs()
    lines = [
        "# REST API under load (loopback)", "",
        f"`python benchmarks/api_load.py --model {args.model} --requests {args.requests} "
        f"--clients {' '.join(map(str, args.clients))}` on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; `emorec serve` defaults (2 requests inferring at once, 10 MB uploads, images "
        "other than JPEG up to 12 MP). A fresh server per mix.", ""]
    for mix in ("jpeg", "png"):
        rows, (start_rss, peak, idle) = serve_and_load(args, mix, small, big, png)
        if mix == "jpeg":
            lines.append(f"**JPEG mix**: single photo {len(small) // 1024} KB; every 5th request a 7000x7000 "
                         f"JPEG ({len(big) / 1e6:.1f} MB); every 7th a batch of 4 of those.")
        else:
            lines.append("**PNG mix**: single photo; every 3rd request a 4000x3000 RGB PNG "
                         f"({len(png['rgb_12mp.png']) / 1e6:.1f} MB, decoded whole); every 5th a 7000x7000 16-bit "
                         f"PNG ({len(png['gray16_49mp.png']) // 1024} KB) and every 7th a 7000x7000 palette PNG "
                         f"({len(png['palette_49mp.png']) // 1024} KB), both refused before decoding (413).")
        lines += ["", "| clients | requests | 200 | 413 | 503 | other | ok requests/s | p50 ms | p95 ms | p99 ms |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            st = r["status"]
            other = sum(v for k, v in st.items() if k not in (200, 413, 503))
            lines.append(f"| {r['clients']} | {r['requests']} | {st.get(200, 0)} | {st.get(413, 0)} | "
                         f"{st.get(503, 0)} | {other} | {r['per_s']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | "
                         f"{r['p99']:.0f} |")
        lines += ["", f"Server RSS: {start_rss / 1024:.0f} MB after start, peak {peak / 1024:.0f} MB (VmHWM), "
                      f"{idle / 1024:.0f} MB after 5 s idle.", ""]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
