"""The seed Keras program, re-done in fastseq: digits read row by row by two LSTM layers.

Keras original (MNIST, 28 steps of 28 pixels)::

    model = Sequential([LSTM(128, activation="relu", return_sequences=True), Dropout(0.2),
                        LSTM(128, activation="relu"), Dropout(0.2),
                        Dense(32, activation="relu"), Dropout(0.2),
                        Dense(10, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=Adam(1e-3))

fastseq, on scikit-learn's bundled 8x8 digits (8 steps of 8 pixels; no download)::

    python examples/digits_lstm.py [--backend numba] [--epochs 80] [--quick]

Prints the test accuracy (>= 0.95 with the defaults), the training time and throughput.
"""
import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from fastseq.estimators import SequenceClassifier


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--n-jobs", type=int, default=None, help="threads (default: all)")
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--quick", action="store_true", help="smaller model, few epochs")
    args = parser.parse_args(argv)

    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)       # (1797, 8, 8): 8 steps of 8 pixels
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.25, random_state=0, stratify=digits.target)

    # --quick: a smaller, faster-learning variant for smoke tests
    units, epochs, lr = (32, min(args.epochs, 12), 5e-3) if args.quick else \
        (128, args.epochs, 1e-3)
    model = SequenceClassifier(
        cell="lstm", activation="relu", units=units, num_layers=2, dropout=0.2,
        head=(32,), head_activation="relu", solver="adam", learning_rate_init=lr,
        batch_size=32, max_iter=epochs,
        early_stopping=True, validation_fraction=0.1, n_iter_no_change=20,
        random_state=0, backend=args.backend, n_jobs=args.n_jobs, verbose=2)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    accuracy = model.score(X_test, y_test)
    predict_s = time.perf_counter() - t0
    print(f"test accuracy {accuracy:.4f} on {len(X_test)} digits "
          f"(best validation accuracy {model.best_validation_score_:.4f})")
    print(f"training {train_s:.1f} s for {model.n_iter_} epochs "
          f"({model.t_ / train_s:.0f} samples/s); prediction {len(X_test) / predict_s:.0f} "
          "samples/s")
    return accuracy


if __name__ == "__main__":
    main()
