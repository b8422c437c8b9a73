"""A character-level language model of the Python standard library's docstrings.

The corpus is built at run time from the docstrings of a fixed list of standard-library
modules (text that exists on every machine with Python; see ``examples/data/README.md``).
The last 10 % is held out. A ``TextGenerator(level="char", window=None)`` is trained with
truncated BPTT (16 parallel streams, chunks of 32 characters, the state carried between
chunks); after every epoch the script prints the training loss and the held-out perplexity
(falling), and at the start and the end a sample of generated text::

    python examples/char_lm.py [--epochs 6] [--chars 60000] [--units 256] [--backend numba]
"""
import argparse
import importlib
import inspect
import time

from fastseq.backends import get_backend
from fastseq.estimators.generator import TextGenerator

MODULES = ("collections", "itertools", "functools", "json", "string", "textwrap", "argparse",
           "random", "statistics", "heapq", "bisect", "fractions", "decimal", "datetime",
           "pathlib", "shutil", "csv", "pprint", "difflib", "calendar")


def docstring_corpus(modules=MODULES):
    """Module and public-member docstrings (longer than 40 characters), deduplicated."""
    parts = []
    for name in modules:
        module = importlib.import_module(name)
        if inspect.getdoc(module):
            parts.append(inspect.getdoc(module))
        for attr in sorted(dir(module)):
            if attr.startswith("_"):
                continue
            obj = getattr(module, attr)
            if inspect.ismodule(obj):
                continue
            doc = inspect.getdoc(obj)
            if doc and len(doc) > 40:
                parts.append(doc)
    return "\n\n".join(dict.fromkeys(parts))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--chars", type=int, default=60000, help="corpus size used")
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--n-jobs", type=int, default=None, help="threads (default: all)")
    parser.add_argument("--prompt", default="Return the ")
    args = parser.parse_args(argv)

    corpus = docstring_corpus()[:args.chars]
    split = int(0.9 * len(corpus))
    train, held_out = corpus[:split], corpus[split:]
    model = TextGenerator(
        level="char", window=None, bptt=32, batch_size=16, embedding_dim=32, cell="lstm",
        units=args.units, num_layers=1, solver="adam", learning_rate_init=3e-3,
        clip_norm=5.0, alpha=0.0, random_state=0, backend=args.backend, n_jobs=args.n_jobs)
    print(f"corpus: {len(corpus)} characters of docstrings ({len(train)} train, "
          f"{len(held_out)} held out)")

    train_time = 0.0
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.partial_fit(train)
        train_time += time.perf_counter() - t0
        if epoch == 1:
            print(f"vocabulary: {model.vocab_size_} characters; LSTM({args.units}), "
                  f"{model.n_streams_} streams x 32-character chunks, backend "
                  f"{get_backend(model.backend).name!r}")
            print("sample after 1 epoch:",
                  repr(args.prompt + model.generate(args.prompt, 120, temperature=0.8,
                                                    random_state=0)))
        print(f"epoch {epoch}  train loss {model.loss_curve_[-1]:.3f}  held-out perplexity "
              f"{model.perplexity(held_out):.2f}  ({train_time:.1f} s)", flush=True)

    chars_seen = model.n_iter_ * (len(train) - 1)
    print(f"training: {train_time:.1f} s, {chars_seen / train_time:.0f} characters/s")
    print(f"held-out next-character accuracy: {model.score(held_out):.3f}")
    t0 = time.perf_counter()
    sample = model.generate(args.prompt, 400, temperature=0.7, random_state=0)
    gen_time = time.perf_counter() - t0
    print(f"\nsample (temperature 0.7):\n{args.prompt}{sample}\n")
    print(f"generation: {400 / gen_time:.0f} characters/s (state carried, one step each)")


if __name__ == "__main__":
    main()
