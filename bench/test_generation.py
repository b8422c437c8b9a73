"""Language models: tokens/s of training and of generation, fastseq's TextGenerator next to
PyTorch (``nn.Embedding`` + ``nn.LSTM`` + ``nn.Linear``) doing the same work in the same run.

Workloads, at the sizes of the two examples:

* ``word``: examples/next_word.py -- 116-word vocabulary, embedding 64, 2 x LSTM(512),
  3-word windows, batches of 16, RMSProp; training = one epoch over the story (212 windows,
  one predicted word each); generation = 32 words greedily from a 3-word prompt, each new
  word reading its 3-word window.
* ``char``: examples/char_lm.py -- 84 characters, embedding 32, LSTM(256), truncated BPTT
  over 16 streams x 32-character chunks with the state carried, Adam, clipping at 5;
  training = 8 chunks (4096 predicted characters); generation = 200 characters sampled
  one step at a time with the state carried.

    pytest bench/test_generation.py --benchmark-only [--bench-threads 2]
    python bench/test_generation.py [--threads 2] [--repeats 3]     # a table of ratios

``extra_info`` holds tokens/s, the thread count and, for fastseq, the ratio to PyTorch
measured earlier in the same session (PyTorch runs first). Skips PyTorch cleanly when it is
not installed.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import warnings

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
STORY = os.path.join(HERE, "..", "examples", "data", "belling_the_cat.txt")

WORKLOADS = {
    "word": dict(level="word", window=3, bptt=None, vocab=116, embedding_dim=64, units=512,
                 num_layers=2, batch_size=16, solver="rmsprop", lr=1e-3, clip_norm=None,
                 n_generate=32),
    "char": dict(level="char", window=None, bptt=32, vocab=84, embedding_dim=32, units=256,
                 num_layers=1, batch_size=16, solver="adam", lr=3e-3, clip_norm=5.0,
                 n_generate=200, n_chunks=8),
}
TORCH_MISSING = importlib.util.find_spec("torch") is None
_RATES = {}          # (workload, what, impl) -> tokens/s, for ratios within one session


def training_text(name):
    """The text one training round sees (the story, or synthetic characters)."""
    w = WORKLOADS[name]
    if name == "word":
        with open(STORY, encoding="utf-8") as fh:
            return fh.read()
    rng = np.random.default_rng(0)
    alphabet = [chr(c) for c in range(32, 32 + w["vocab"])]
    n = w["batch_size"] * w["bptt"] * w["n_chunks"] + 1
    return "".join(rng.choice(alphabet, size=n))


# ---------------------------------------------------------------- fastseq
def fastseq_runners(name, backend, n_threads):
    """(train_fn, generate_fn, tokens per train call, tokens per generate call)."""
    from fastseq.estimators.generator import TextGenerator
    w = WORKLOADS[name]
    text = training_text(name)
    model = TextGenerator(
        level=w["level"], window=w["window"], bptt=w["bptt"] or 64,
        embedding_dim=w["embedding_dim"], units=w["units"], num_layers=w["num_layers"],
        batch_size=w["batch_size"], solver=w["solver"], learning_rate_init=w["lr"],
        clip_norm=w["clip_norm"], alpha=0.0, random_state=0, backend=backend,
        n_jobs=n_threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.partial_fit(text)                      # builds the vocabulary and network
    if name == "word":
        n_train = model.t_                           # windows = predicted words
        prompt = model.vocabulary_.encode(["the", "mice", "had"])
        temperature = 0.0
    else:
        n_train = model.n_streams_ * ((len(text) - 1) // model.n_streams_)
        prompt = model.vocabulary_.encode(list(text[:8]))
        temperature = 1.0

    def train():
        model.partial_fit(text)

    def generate():
        return model.generate_ids(prompt, w["n_generate"], temperature=temperature,
                                  random_state=0)
    return train, generate, n_train, w["n_generate"]


# ---------------------------------------------------------------- PyTorch
def torch_runners(name, n_threads):
    import torch
    from torch import nn
    w = WORKLOADS[name]
    torch.manual_seed(0)
    torch.set_num_threads(n_threads)
    V, E, H, L = w["vocab"], w["embedding_dim"], w["units"], w["num_layers"]

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(V, E)
            self.rnn = nn.LSTM(E, H, num_layers=L, batch_first=True)
            self.fc = nn.Linear(H, V)

        def forward(self, x, state=None):
            out, state = self.rnn(self.embedding(x), state)
            return self.fc(out), state

    model = LM()
    opt = (torch.optim.RMSprop(model.parameters(), lr=w["lr"], alpha=0.9)
           if w["solver"] == "rmsprop" else torch.optim.Adam(model.parameters(), lr=w["lr"]))
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    B = w["batch_size"]
    if name == "word":
        n_windows = 212
        ids = torch.randint(0, V, (n_windows + 3,), generator=gen)
        X = ids.unfold(0, 3, 1)[:n_windows]                     # [212, 3]
        y = ids[3:n_windows + 3]

        def train():
            order = torch.randperm(n_windows, generator=gen)
            for s in range(0, n_windows, B):
                idx = order[s:s + B]
                opt.zero_grad()
                logits, _ = model(X[idx])
                loss = loss_fn(logits[:, -1], y[idx])
                loss.backward()
                opt.step()

        def generate():
            with torch.no_grad():
                ctx = [0, 1, 2]
                for _ in range(w["n_generate"]):
                    logits, _ = model(torch.tensor([ctx[-3:]]))
                    ctx.append(int(logits[0, -1].argmax()))
            return ctx
        return train, generate, n_windows, w["n_generate"]

    T, n_chunks = w["bptt"], w["n_chunks"]
    stream = torch.randint(0, V, (B, T * n_chunks + 1), generator=gen)

    def train():
        state = None
        for k in range(n_chunks):
            x = stream[:, k * T:(k + 1) * T]
            y = stream[:, k * T + 1:(k + 1) * T + 1]
            if state is not None:
                state = tuple(s.detach() for s in state)
            opt.zero_grad()
            logits, state = model(x, state)
            loss = loss_fn(logits.reshape(-1, V), y.reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), w["clip_norm"])
            opt.step()

    def generate():
        with torch.no_grad():
            logits, state = model(stream[:1, :8])
            out = []
            for _ in range(w["n_generate"]):
                token = torch.multinomial(torch.softmax(logits[0, -1], -1), 1, generator=gen)
                out.append(int(token))
                logits, state = model(token.view(1, 1), state)
        return out
    return train, generate, B * T * n_chunks, w["n_generate"]


# ---------------------------------------------------------------- pytest-benchmark
def _impls():
    from fastseq.benchmarking.suite import default_backends
    return ["torch"] + default_backends()


@pytest.fixture(scope="module")
def runners(n_threads):
    cache = {}

    def get(name, impl):
        if (name, impl) not in cache:
            if impl == "torch":
                cache[name, impl] = torch_runners(name, n_threads)
            else:
                cache[name, impl] = fastseq_runners(name, impl, n_threads)
        return cache[name, impl]
    return get


@contextlib.contextmanager
def _scope(impl, n_threads):
    if impl == "torch":
        yield
        return
    from fastseq.benchmarking.timing import blas_limits
    with blas_limits(n_threads):
        yield


@pytest.mark.parametrize("impl", _impls())
@pytest.mark.parametrize("what", ["train", "generate"])
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_language_model(benchmark, runners, name, what, impl, n_threads):
    if impl == "torch" and TORCH_MISSING:
        pytest.skip("PyTorch is not installed (pip install 'fastseq[bench]')")
    train, generate, n_train, n_gen = runners(name, impl)
    fn, n_tokens = (train, n_train) if what == "train" else (generate, n_gen)
    benchmark.group = f"language model {name}: {what} (tokens/s)"
    with _scope(impl, n_threads):
        benchmark.pedantic(fn, rounds=5 if what == "generate" else 3, iterations=1,
                           warmup_rounds=1)
    rate = n_tokens / benchmark.stats.stats.median
    _RATES[name, what, impl] = rate
    benchmark.extra_info.update(impl=impl, threads=n_threads, tokens=n_tokens,
                                tokens_per_s=round(rate, 1))
    if impl != "torch" and ("torch" not in impl) and (name, what, "torch") in _RATES:
        benchmark.extra_info["ratio_to_torch"] = round(rate / _RATES[name, what, "torch"], 3)


# ---------------------------------------------------------------- standalone table
def main(argv=None):
    import argparse
    from fastseq._config import default_threads
    from fastseq.benchmarking.suite import default_backends
    from fastseq.benchmarking.timing import measure
    parser = argparse.ArgumentParser(description="tokens/s vs PyTorch, same run")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default=",".join(default_backends()))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    args = parser.parse_args(argv)
    impls = ([] if TORCH_MISSING else ["torch"]) + args.backends.split(",")
    print(f"threads: {args.threads}")
    print("| workload | what | " + " | ".join(f"{i} tokens/s" for i in impls) +
          " | " + " | ".join(f"{i} / torch" for i in impls if i != "torch") + " |")
    for name in args.workloads.split(","):
        built = {}
        for impl in impls:
            built[impl] = (torch_runners(name, args.threads) if impl == "torch"
                           else fastseq_runners(name, impl, args.threads))
        for k, what in ((0, "train"), (1, "generate")):
            rates = {impl: [] for impl in impls}
            for _ in range(args.repeats):               # interleaved: noise hits all alike
                for impl in impls:
                    fn, n = built[impl][k], built[impl][2 + k]
                    with _scope(impl, args.threads):
                        t = measure(fn, warmup=1, min_rounds=3, max_rounds=5, min_time=0.5)
                    rates[impl].append(n / t.median)
            best = {impl: max(r) for impl, r in rates.items()}
            cells = [f"{best[i]:.0f}" for i in impls]
            ratios = [f"{best[i] / best['torch']:.2f}" if "torch" in best else "-"
                      for i in impls if i != "torch"]
            print(f"| {name} | {what} | " + " | ".join(cells) + " | " + " | ".join(ratios) +
                  " |", flush=True)


if __name__ == "__main__":
    main()
