"""Command line: ``python -m fastseq demo | bench [...] | info``."""
from __future__ import annotations

import argparse
import sys


def _info(_args):
    import numpy as np

    from . import __version__
    from ._config import default_threads
    from .backends import available_backends
    print(f"fastseq {__version__}  numpy {np.__version__}  threads {default_threads()}")
    print("backends available:", ", ".join(available_backends()))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:               # bench parses its own options
        from .benchmarking import main as bench_main
        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="fastseq")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, threads and available backends")
    demo = sub.add_parser("demo", help="train and evaluate a model on bundled data")
    demo.add_argument("--backend", default="auto")
    demo.add_argument("--quick", action="store_true", help="a shorter run")
    sub.add_parser("bench", help="benchmark report (needs the bench extra); "
                                 "see python -m fastseq bench --help")
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info(args)
    if args.command == "demo":
        from .demo import main as demo_main
        return demo_main(backend=args.backend, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
