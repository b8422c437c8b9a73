"""Sequence tagging: find the word boundaries in English text written without spaces.

Every character of a sentence such as ``"returnthelistofnames"`` is tagged 1 if it starts a
word and 0 otherwise. The text is the docstrings of Python's own standard library (so nothing
is downloaded); characters are token ids fed through a trainable embedding to a
bidirectional GRU tagger, with ragged (variable-length) sentences::

    python examples/tagging_word_boundaries.py [--backend numba] [--quick]

Prints the F1 score of the word-start tag on held-out sentences next to a character-bigram
baseline (the majority tag of each (previous, current) character pair in the training text).
"""
import argparse
import asyncio
import collections
import dataclasses
import email
import functools
import http.client
import inspect
import json
import logging
import pathlib
import re
import subprocess
import threading
import time
import typing
import unittest
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import f1_score

from fastseq.estimators import SequenceTagger

MODULES = [argparse, collections, logging, unittest, json, email, http.client, subprocess,
           threading, typing, pathlib, inspect, functools, dataclasses, asyncio]


def load_sentences(min_words=3, max_words=10):
    """Distinct lower-case sentences (words of a-z) from standard-library docstrings."""
    sentences = set()
    for module in MODULES:
        for obj in vars(module).values():
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            for part in re.split(r"[.:;\n]", inspect.getdoc(obj) or ""):
                words = re.findall(r"[a-z]+", part.lower())
                if min_words <= len(words) <= max_words:
                    sentences.add(" ".join(words))
    return sorted(sentences)


def encode(sentence):
    """Character ids (a=1 .. z=26) and word-start tags of a sentence, spaces removed."""
    words = sentence.split()
    ids = np.array([ord(c) - ord("a") + 1 for c in "".join(words)], dtype=np.int64)
    tags = np.concatenate([[1] + [0] * (len(w) - 1) for w in words]).astype(np.int64)
    return ids, tags


def bigram_baseline(X_train, y_train, X_test):
    starts, total = collections.Counter(), collections.Counter()
    for ids, tags in zip(X_train, y_train):
        for i, c in enumerate(ids):
            key = (ids[i - 1] if i else 0, c)
            total[key] += 1
            starts[key] += tags[i]
    return [np.array([int(2 * starts[(ids[i - 1] if i else 0, c)] >
                          total[(ids[i - 1] if i else 0, c)]) for i, c in enumerate(ids)])
            for ids in X_test]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--n-jobs", type=int, default=None, help="threads (default: all)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="a subset and fewer epochs")
    args = parser.parse_args(argv)

    sentences = load_sentences()
    np.random.default_rng(0).shuffle(sentences)
    if args.quick:
        sentences = sentences[:500]
    pairs = [encode(s) for s in sentences]
    n_train = int(0.8 * len(pairs))
    X_train, y_train = [p[0] for p in pairs[:n_train]], [p[1] for p in pairs[:n_train]]
    X_test, y_test = [p[0] for p in pairs[n_train:]], [p[1] for p in pairs[n_train:]]

    model = SequenceTagger(
        embedding_dim=16, vocab_size=27, cell="gru", units=24 if args.quick else 48,
        num_layers=1 if args.quick else 2, bidirectional=True, learning_rate_init=3e-3,
        batch_size=32, max_iter=8 if args.quick else args.epochs, random_state=0,
        backend=args.backend, n_jobs=args.n_jobs)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    train_s = time.perf_counter() - t0
    truth = np.concatenate(y_test)
    f1_model = f1_score(truth, np.concatenate(model.predict(X_test)))
    f1_base = f1_score(truth, np.concatenate(bigram_baseline(X_train, y_train, X_test)))
    print(f"{len(X_train)} training / {len(X_test)} test sentences "
          f"({sum(map(len, X_train))} / {len(truth)} characters)")
    print(f"word-start F1: tagger {f1_model:.3f}, character-bigram baseline {f1_base:.3f}")
    print(f"training {train_s:.1f} s, {model.n_iter_} epochs")
    return f1_model, f1_base


if __name__ == "__main__":
    main()
