"""The seed's next-word program, re-done in fastseq: memorise a short story, then continue it.

The original (a TensorFlow 1 tutorial) read 3 words of Aesop's "Belling the Cat" and
predicted the 4th with a 2-layer LSTM(512) trained by RMSProp (learning rate 1e-3), then
continued a 3-word prompt by 32 words. Here the same model is a ``TextGenerator`` with a
3-word window over the story in ``examples/data/belling_the_cat.txt`` (public domain, see the
README there)::

    python examples/next_word.py [--backend numba] [--max-epochs 60] [--quick]

It trains one epoch at a time until the next-word accuracy on the story reaches 95 %
(the story repeats three 3-word contexts with different next words, so 98.6 % is the most any
model can reach), then prints the accuracy, the perplexity, the time and the throughput, and
the story continued from a 3-word prompt by 32 words: greedily (the memorised text) and
sampled (temperature 0.8, top 5).
"""
import argparse
import os
import time

from fastseq.backends import get_backend
from fastseq.estimators.generator import TextGenerator

HERE = os.path.dirname(os.path.abspath(__file__))
STORY = os.path.join(HERE, "data", "belling_the_cat.txt")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--target", type=float, default=0.95, help="accuracy to reach")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-jobs", type=int, default=None, help="threads (default: all)")
    parser.add_argument("--prompt", default="the mice had")
    parser.add_argument("--quick", action="store_true", help="LSTM(64) instead of 512")
    args = parser.parse_args(argv)

    with open(STORY, encoding="utf-8") as fh:
        story = fh.read()
    units = 64 if args.quick else 512
    model = TextGenerator(
        level="word", window=3, embedding_dim=64, cell="lstm", units=units, num_layers=2,
        solver="rmsprop", learning_rate_init=1e-2 if args.quick else 1e-3,
        batch_size=args.batch_size, alpha=0.0, random_state=0, backend=args.backend,
        n_jobs=args.n_jobs)

    train_time = 0.0
    accuracy = 0.0
    for epoch in range(1, args.max_epochs + 1):
        t0 = time.perf_counter()
        model.partial_fit(story)                 # one epoch; the vocabulary of epoch 1 kept
        train_time += time.perf_counter() - t0
        accuracy = model.score(story)
        print(f"epoch {epoch:3d}  loss {model.loss_curve_[-1]:.4f}  "
              f"next-word accuracy {accuracy:.3f}  ({train_time:.1f} s)", flush=True)
        if accuracy >= args.target:
            break

    n_windows = model.t_                         # windows (= predicted words) seen
    print(f"\nvocabulary: {model.vocab_size_} tokens; 2 x LSTM({units}), 3-word window, "
          f"RMSProp, backend {get_backend(model.backend).name!r}")
    print(f"next-word accuracy on the story: {accuracy:.3f} "
          f"({'reached' if accuracy >= args.target else 'NOT reached'} {args.target:.2f}) "
          f"after {model.n_iter_} epochs; perplexity {model.perplexity(story):.3f}")
    print(f"training time: {train_time:.1f} s, {n_windows / train_time:.0f} words/s")

    greedy = model.generate(args.prompt, 32, temperature=0)
    t0 = time.perf_counter()                     # timed after the first call (warm)
    sampled = model.generate(args.prompt, 32, temperature=0.8, top_k=5, random_state=1)
    gen_time = time.perf_counter() - t0
    print(f"\nprompt: {args.prompt!r}")
    print(f"greedy:  {args.prompt} {greedy}")
    print(f"sampled: {args.prompt} {sampled}")
    print(f"generation: {32 / gen_time:.0f} words/s (one batched step per word)")
    return 0 if accuracy >= args.target else 1


if __name__ == "__main__":
    raise SystemExit(main())
