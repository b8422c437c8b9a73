"""``python -m fastseq demo``: train and evaluate a recurrent classifier on bundled data.

scikit-learn's digits (8x8 images) are read row by row: each image is a sequence of 8 steps
of 8 pixels. The model is the seed Keras program re-done in fastseq: two LSTM(128, relu)
layers with dropout, a dense head, Adam 1e-3. ``--quick`` trains a smaller model for a few
epochs (a smoke test of the installation, about a second of training on a fast engine).
"""
from __future__ import annotations

import time
import warnings

import numpy as np


def load_digit_rows(test_size=0.25, random_state=0):
    """Digits as ``(n, 8, 8)`` float32 sequences in [0, 1]; a stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)
    return train_test_split(X, digits.target, test_size=test_size,
                            random_state=random_state, stratify=digits.target)


def make_model(backend="auto", quick=False, max_iter=None, verbose=0, random_state=0,
               n_jobs=None):
    from .estimators import SequenceClassifier
    if quick:
        return SequenceClassifier(cell="lstm", units=32, num_layers=1, head=(32,),
                                  learning_rate_init=3e-3, batch_size=32,
                                  max_iter=max_iter or 8, random_state=random_state,
                                  backend=backend, verbose=verbose, n_jobs=n_jobs)
    return SequenceClassifier(cell="lstm", activation="relu", units=128, num_layers=2,
                              dropout=0.2, head=(32,), learning_rate_init=1e-3,
                              batch_size=32, max_iter=max_iter or 60,
                              early_stopping=True, validation_fraction=0.1,
                              n_iter_no_change=15, random_state=random_state,
                              backend=backend, verbose=verbose, n_jobs=n_jobs)


def run(backend="auto", quick=False, max_iter=None, verbose=0, random_state=0, n_jobs=None):
    """Train, evaluate, and return a dict of the measurements."""
    from .backends import get_backend
    X_train, X_test, y_train, y_test = load_digit_rows(random_state=random_state)
    model = make_model(backend, quick, max_iter, verbose, random_state, n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")               # ConvergenceWarning of short runs
        t0 = time.perf_counter()
        model.fit(X_train, y_train)
        train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    accuracy = model.score(X_test, y_test)
    predict_s = time.perf_counter() - t0
    return dict(backend=get_backend(backend).name, accuracy=accuracy, epochs=model.n_iter_,
                train_s=train_s, train_samples_per_s=model.t_ / train_s,
                predict_samples_per_s=len(X_test) / predict_s,
                n_train=len(X_train), n_test=len(X_test))


def main(backend="auto", quick=False, n_jobs=None):
    kind = "quick: LSTM(32)" if quick else "2 x LSTM(128, relu) + dropout + dense head"
    print(f"fastseq demo: digits read row by row (8 steps x 8 pixels), {kind}")
    r = run(backend=backend, quick=quick, verbose=0 if quick else 2, n_jobs=n_jobs)
    print(f"backend {r['backend']}: {r['epochs']} epochs on {r['n_train']} sequences")
    print(f"test accuracy   {r['accuracy']:.4f}  ({r['n_test']} sequences)")
    print(f"training time   {r['train_s']:.1f} s  ({r['train_samples_per_s']:.0f} samples/s)")
    print(f"prediction      {r['predict_samples_per_s']:.0f} samples/s")
    return 0
