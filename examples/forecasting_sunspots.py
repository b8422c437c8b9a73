"""One-step-ahead forecasting of the yearly sunspot numbers (1700-2008) with an LSTM.

The series is bundled in ``examples/data/sunspots.csv`` (public domain, from the U.S.
National Geophysical Data Center, as shipped by statsmodels' ``datasets.sunspots``), so
nothing is downloaded. Each sample is the previous ``window`` years; the target is the next
year. The model is trained on the years up to 1950 and tested on 1951-2008 against the
last-value ("persistence") baseline::

    python examples/forecasting_sunspots.py [--backend numba] [--quick]

With the defaults the LSTM's test RMSE is about 40 % below the baseline's (the 11-year solar
cycle is what it learns); the script asserts nothing, it prints both.
"""
import argparse
import os
import time
import warnings

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.exceptions import ConvergenceWarning

from fastseq.estimators import SequenceRegressor

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sunspots.csv")


def load_sunspots():
    """(years, yearly sunspot numbers) as float arrays."""
    table = np.loadtxt(DATA, delimiter=",", skiprows=1)
    return table[:, 0], table[:, 1]


def make_windows(series, years, window):
    """X ``(n, window, 1)`` of past values, y ``(n,)`` the next value, and its year."""
    X = sliding_window_view(series[:-1], window)
    return X[:, :, None], series[window:], years[window:]


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--n-jobs", type=int, default=None, help="threads (default: all)")
    parser.add_argument("--window", type=int, default=22)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="fewer epochs")
    args = parser.parse_args(argv)

    years, spots = load_sunspots()
    X, y, target_years = make_windows(spots, years, args.window)
    train = target_years <= 1950
    mean, std = spots[years <= 1950].mean(), spots[years <= 1950].std()   # train stats only

    model = SequenceRegressor(
        cell="lstm", units=32, learning_rate_init=3e-3, batch_size=32,
        max_iter=40 if args.quick else args.epochs, early_stopping=True,
        validation_fraction=0.15, n_iter_no_change=40, random_state=0, backend=args.backend,
        n_jobs=args.n_jobs)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit((X[train] - mean) / std, (y[train] - mean) / std)
    train_s = time.perf_counter() - t0
    forecast = model.predict((X[~train] - mean) / std) * std + mean
    baseline = X[~train, -1, 0]                       # last observed value
    model_rmse, base_rmse = rmse(forecast, y[~train]), rmse(baseline, y[~train])
    print(f"test years {int(target_years[~train][0])}-{int(target_years[~train][-1])}: "
          f"LSTM RMSE {model_rmse:.2f}, last-value baseline RMSE {base_rmse:.2f} "
          f"({100 * (1 - model_rmse / base_rmse):.0f} % lower)")
    print(f"training {train_s:.1f} s, {model.n_iter_} epochs")
    return model_rmse, base_rmse


if __name__ == "__main__":
    main()
