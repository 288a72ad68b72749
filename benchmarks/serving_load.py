"""Load test of the digits service: the book's against the seed's naive one (chapter 11).

    .venv/bin/python benchmarks/serving_load.py                 # 800 requests from 8 clients
    .venv/bin/python benchmarks/serving_load.py --clients 1 --requests 200 --json results.json

It needs chapter 05's saved CNN (run chapter 05 first, or pass --model PATH). Everything runs on
127.0.0.1; the numbers depend on the machine, so the script prints them rather than checking them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bigmodel_utils.paths import model_path  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=model_path("digits_cnn.keras"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        print(f"{args.model} not found: run chapter 05 to save the digits CNN, or pass --model", file=sys.stderr)
        return 2
    from bigmodel_utils.data import load_dataset
    from bigmodel_utils.serving.loadtest import compare

    images, _ = load_dataset("digits", split="test")
    results = compare(args.model, images, clients=args.clients, requests=args.requests)
    print(f"{'service':36} {'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(f"{r.name:36} {r.clients:7d} {r.requests:8d} {r.errors:6d} {r.throughput:8.1f} {r.p50_ms:8.2f} {r.p99_ms:8.2f}")
    naive, served = results
    print(f"throughput: {served.throughput / naive.throughput:.1f}x the naive service")
    if args.json:
        args.json.write_text(json.dumps([r.as_dict() for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
