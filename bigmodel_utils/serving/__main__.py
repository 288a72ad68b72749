"""``python -m bigmodel_utils.serving``: serve the book's models with waitress (``make serve``).

By default it serves chapter 05's digits CNN, chapter 06's review classifier (its best recurrent network) and
chapter 13's GPT (as ``gpt``, at ``POST /models/gpt/generate``, chapter 14) from the book's model folder, whichever
of them exist; ``--digits PATH`` / ``--reviews PATH`` / ``--gpt STEM`` pick other saved files.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bigmodel_utils.serving.generation import default_gpt_stem, gpt_files
from bigmodel_utils.serving.served import default_model_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("--digits", type=Path, default=default_model_path("digits"), help="chapter 05's CNN (.keras)")
    parser.add_argument("--reviews", type=Path, default=default_model_path("reviews"),
                        help="chapter 06's review classifier (.keras, reads raw text); default: the one chapter 06 saved")
    parser.add_argument("--gpt", type=Path, default=default_gpt_stem(),
                        help="chapter 13's GPT: the stem of STEM.weights.h5 and STEM.json; served as 'gpt'")
    parser.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (this machine only) or 0.0.0.0 (the network)")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port (the URL is printed)")
    parser.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-body", type=int, default=1 << 20, help="largest request body in bytes (413 above)")
    parser.add_argument("--max-tokens", type=int, default=200, help="most tokens one generation request may ask for")
    parser.add_argument("--max-seconds", type=float, default=10.0,
                        help="longest generation; it then stops with finish_reason 'time'")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from bigmodel_utils.serving import create_app, load_served_generator, load_served_model

    models, generators = [], []
    for kind, path in (("digits", args.digits), ("reviews", args.reviews)):
        if path.is_file():
            models.append(load_served_model(path, kind, max_batch=args.max_batch))
            logging.info("serving %s from %s (version %s)", kind, path, models[-1].version)
        else:
            logging.warning("%s model not found at %s: not served (run its chapter to save it)", kind, path)
    if all(f.is_file() for f in gpt_files(args.gpt)):
        generators.append(load_served_generator(args.gpt, "gpt", max_tokens=args.max_tokens,
                                                max_seconds=args.max_seconds))
        logging.info("serving gpt from %s (version %s)", args.gpt, generators[-1].version)
    else:
        logging.warning("GPT not found at %s (.weights.h5 and .json): not served (run chapter 13 to save it)", args.gpt)
    if not models and not generators:
        print(f"no model to serve: none of {args.digits}, {args.reviews} or {args.gpt}.weights.h5 exists; run "
              "chapters 05, 06 and 13 (or pass --digits/--reviews/--gpt with saved files)", file=sys.stderr)
        return 2
    from bigmodel_utils.serving.app import serve

    serve(create_app(models, max_content_length=args.max_body, generators=generators), args.host, args.port,
          args.threads, args.max_body, name=str([m.name for m in models + generators]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
