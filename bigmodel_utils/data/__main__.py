"""``python -m bigmodel_utils.data list | fetch NAME [NAME ...] | verify``.

Every failure ends in one line, ``error: <what went wrong and what to do>``, and exit status 1.
"""

from __future__ import annotations

import argparse
import sys

from bigmodel_utils.data import DataError, DataManifest, data_dir, fetch, get_manifest, verify


def _cmd_list(manifest: DataManifest) -> int:
    print(f"{'name':<18} {'offline':<8} {'source':<9} licence / description")
    for e in manifest:
        print(f"{e.name:<18} {'yes' if e.offline else 'no':<8} {e.source_kind:<9} {e.licence}")
        print(f"{'':<37}{e.description}")
    print(f"\ncache folder: {data_dir()} (override with BIGMODEL_DATA_DIR)")
    return 0


def _cmd_fetch(manifest: DataManifest, names: list[str]) -> int:
    for name in names:
        paths = fetch(name, manifest)
        where = ", ".join(str(p) for p in paths) if paths else "(generated on this machine: nothing to fetch)"
        print(f"{name}: ok {where}")
    return 0


def _cmd_verify(manifest: DataManifest) -> int:
    rows = verify(manifest)
    bad = 0
    for r in rows:
        print(f"{r.status:<16} {r.dataset:<18} {r.file}")
        bad += r.status in {"corrupt", "missing package"}
    print(f"\n{len(rows)} files: {sum(r.status == 'ok' for r in rows)} ok, "
          f"{sum(r.status == 'not cached' for r in rows)} not cached (online data sets), {bad} with problems")
    if bad:
        print("error: some files are corrupt or missing; 'make clean && make test' rebuilds the "
              "environment, and 'python -m bigmodel_utils.data fetch NAME' downloads again", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.data",
                                     description="The book's data sets, as the manifest data/registry.json names them.")
    parser.add_argument("--manifest", default=None, help="another manifest file (default: data/registry.json)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list every data set of the manifest")
    p_fetch = sub.add_parser("fetch", help="download (online) or locate and verify (offline) data sets")
    p_fetch.add_argument("names", nargs="+", metavar="NAME")
    sub.add_parser("verify", help="check the sha256 of every shipped and cached file")
    args = parser.parse_args(argv)
    try:
        manifest = DataManifest(args.manifest) if args.manifest else get_manifest()
        if args.command == "list":
            return _cmd_list(manifest)
        if args.command == "fetch":
            return _cmd_fetch(manifest, args.names)
        return _cmd_verify(manifest)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
