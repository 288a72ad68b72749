"""``python -m bigmodel_utils.serving``: serve the book's models with waitress (``make serve``).

By default it serves chapter 05's digits CNN and chapter 06's review classifier (its best recurrent
network) from the book's model folder, whichever of them exist; ``--digits PATH`` / ``--reviews PATH`` pick other saved files.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bigmodel_utils.serving.models import default_model_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("--digits", type=Path, default=default_model_path("digits"), help="chapter 05's CNN (.keras)")
    parser.add_argument("--reviews", type=Path, default=default_model_path("reviews"),
                        help="chapter 06's review classifier (.keras, reads raw text); default: the one chapter 06 saved")
    parser.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (this machine only) or 0.0.0.0 (the network)")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port (the URL is printed)")
    parser.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-body", type=int, default=1 << 20, help="largest request body in bytes (413 above)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from bigmodel_utils.serving import create_app, load_served_model

    models = []
    for kind, path in (("digits", args.digits), ("reviews", args.reviews)):
        if path.is_file():
            models.append(load_served_model(path, kind, max_batch=args.max_batch))
            logging.info("serving %s from %s (version %s)", kind, path, models[-1].version)
        else:
            logging.warning("%s model not found at %s: not served (run its chapter to save it)", kind, path)
    if not models:
        print(f"no model to serve: neither {args.digits} nor {args.reviews} exists; run chapters 05 and 06 "
              "(or pass --digits/--reviews with saved .keras files)", file=sys.stderr)
        return 2
    from bigmodel_utils.serving.app import serve

    serve(create_app(models, max_content_length=args.max_body), args.host, args.port, args.threads, args.max_body,
          name=str([m.name for m in models]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
