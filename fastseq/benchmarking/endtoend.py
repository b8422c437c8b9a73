"""End to end: samples/s of training and prediction for a whole model.

The model of the seed program (issue 6): two LSTM(128) layers over 28 steps of 28
features (MNIST read row by row; random data here, the speed does not depend on it), a
dense softmax head over 10 classes, Adam, batch 32 for training and 256 for prediction.

* fastseq: ``fastseq.estimators.SequenceClassifier`` (skipped, with the reason, until it
  exists); and the same two layers through :mod:`fastseq.layers` alone ("layers only":
  forward + backward per batch, no head, no optimizer), the floor the estimator's
  overhead is measured against;
* PyTorch: ``nn.LSTM(28, 128, num_layers=2)`` + ``nn.Linear``, Adam, cross-entropy;
* Keras: ``Sequential([LSTM(128, return_sequences=True), LSTM(128), Dense(10)])``, in the
  Keras worker process.
"""
from __future__ import annotations

import warnings

import numpy as np

from .timing import measure

SEED_MODEL = dict(T=28, F=28, units=128, num_layers=2, n_classes=10, batch_train=32,
                  batch_predict=256, n_train=512, n_predict=2048)
POLICY = dict(warmup=1, min_rounds=2, max_rounds=5, min_time=1.0)


class EstimatorMissing(Exception):
    pass


def seed_data(n, seed=0):
    rng = np.random.default_rng(seed)
    m = SEED_MODEL
    X = rng.standard_normal((n, m["T"], m["F"])).astype(np.float32)
    y = rng.integers(0, m["n_classes"], size=n)
    return X, y


# ------------------------------------------------------------------ fastseq
def estimator_class():
    try:
        from ..estimators import SequenceClassifier
    except ImportError as exc:
        raise EstimatorMissing(f"fastseq.estimators is not available yet ({exc})") from exc
    return SequenceClassifier


def fastseq_estimator(backend, n_threads, max_iter=1):
    m = SEED_MODEL
    cls = estimator_class()
    try:
        return cls(cell="lstm", units=m["units"], num_layers=m["num_layers"],
                   batch_size=m["batch_train"], max_iter=max_iter, solver="adam",
                   learning_rate_init=1e-3, shuffle=True, random_state=0,
                   backend=backend, n_jobs=n_threads, dtype="float32", verbose=0)
    except TypeError as exc:
        raise EstimatorMissing(f"SequenceClassifier does not take the parameters of "
                               f"DESIGN.md section 6: {exc}") from exc


def fastseq_fit_runner(backend, n_threads):
    X, y = seed_data(SEED_MODEL["n_train"])
    est = fastseq_estimator(backend, n_threads)

    def fn():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")    # ConvergenceWarning after one epoch
            est.fit(X, y)
    return fn


def fastseq_predict_runner(backend, n_threads):
    X, y = seed_data(SEED_MODEL["n_predict"])
    est = fastseq_estimator(backend, n_threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X[:256], y[:256])
    return lambda: est.predict(X)


def layers_fit_runner(backend, n_threads):
    """Forward + backward of the two recurrent layers per batch: the engine's share."""
    from ..layers import init_params, stack_backward, stack_forward
    m = SEED_MODEL
    X, _ = seed_data(m["n_train"])
    Xt = np.ascontiguousarray(X.transpose(1, 0, 2))          # [T, n, F]
    params = init_params("lstm", m["F"], m["units"], num_layers=m["num_layers"],
                         random_state=0)
    bs = m["batch_train"]
    rng = np.random.default_rng(1)
    d_out = np.zeros((m["T"], bs, m["units"]), dtype=np.float32)
    d_out[-1] = rng.standard_normal((bs, m["units"]))         # many-to-one: last step

    def fn():
        for start in range(0, m["n_train"], bs):
            x = Xt[:, start:start + bs]
            _, _, _, cache = stack_forward(backend, "lstm", params, x, training=True,
                                           n_threads=n_threads)
            stack_backward(params, cache, d_out=d_out[:, :x.shape[1]],
                           n_threads=n_threads, state_grad=False)
    return fn


# ------------------------------------------------------------------ PyTorch
def _torch_model(n_threads):
    import torch
    m = SEED_MODEL
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(m["F"], m["units"], num_layers=m["num_layers"],
                                     batch_first=True)
            self.head = torch.nn.Linear(m["units"], m["n_classes"])

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])
    return Net()


def torch_fit_runner(n_threads):
    import torch
    m = SEED_MODEL
    X, y = seed_data(m["n_train"])
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    model = _torch_model(n_threads)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)

    def fn():
        order = torch.randperm(len(X), generator=gen)
        for start in range(0, len(X), m["batch_train"]):
            idx = order[start:start + m["batch_train"]]
            opt.zero_grad()
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
    return fn


def torch_predict_runner(n_threads):
    import torch
    m = SEED_MODEL
    X, _ = seed_data(m["n_predict"])
    X = torch.from_numpy(X)
    model = _torch_model(n_threads).eval()

    def fn():
        with torch.no_grad():
            return [model(X[s:s + m["batch_predict"]]).argmax(1)
                    for s in range(0, len(X), m["batch_predict"])]
    return fn


# ------------------------------------------------------------------ Keras (in the worker)
def keras_runners():
    """Built inside the Keras worker: (fit_fn, predict_fn)."""
    import keras
    m = SEED_MODEL
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((m["T"], m["F"])),
                              keras.layers.LSTM(m["units"], return_sequences=True),
                              keras.layers.LSTM(m["units"]),
                              keras.layers.Dense(m["n_classes"])])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    X, y = seed_data(m["n_train"])
    Xp, _ = seed_data(m["n_predict"])

    def fit():
        model.fit(X, y, batch_size=m["batch_train"], epochs=1, shuffle=True, verbose=0)

    def predict():
        model.predict(Xp, batch_size=m["batch_predict"], verbose=0)
    return fit, predict


# ------------------------------------------------------------------ driver
def _rate(fn, n):
    t = measure(fn, **POLICY)
    return dict(samples_per_s=n / t.median, seconds=t.median, first_s=t.first)


def run_endtoend(backends, peers, n_threads, keras=None, log=print):
    """Records ``{impl, what, samples_per_s, seconds}`` or ``{impl, what, skip}``."""
    from .timing import blas_limits
    m = SEED_MODEL
    fit_what = f"fit, 2×LSTM({m['units']}) on {m['T']}×{m['F']}, batch {m['batch_train']}"
    pred_what = f"predict, batch {m['batch_predict']}"
    out = []

    def add(impl, what, make, n, scope=None):
        try:
            fn = make()
        except (EstimatorMissing, ImportError) as exc:
            rec = dict(impl=impl, what=what, skip=str(exc))
        else:
            with (scope() if scope else blas_limits(n_threads)):
                rec = dict(impl=impl, what=what, **_rate(fn, n))
        out.append(rec)
        log(f"  {impl:<22} {what:<48} " + (f"skipped: {rec['skip']}" if "skip" in rec
                                           else f"{rec['samples_per_s']:.0f} samples/s"))

    for backend in backends:
        add(backend, fit_what, lambda: fastseq_fit_runner(backend, n_threads), m["n_train"])
        add(backend, pred_what, lambda: fastseq_predict_runner(backend, n_threads),
            m["n_predict"])
        add(f"{backend} (layers only)", fit_what.replace("fit", "fwd+bwd"),
            lambda: layers_fit_runner(backend, n_threads), m["n_train"])
    if "torch" in peers:
        import contextlib

        import torch

        @contextlib.contextmanager
        def torch_threads():
            before = torch.get_num_threads()
            torch.set_num_threads(n_threads)
            try:
                yield
            finally:
                torch.set_num_threads(before)
        add("torch", fit_what, lambda: torch_fit_runner(n_threads), m["n_train"],
            torch_threads)
        add("torch", pred_what, lambda: torch_predict_runner(n_threads), m["n_predict"],
            torch_threads)
    if keras is not None and "keras" in peers:
        answer = keras.endtoend() if keras.available else {"skip": keras.reason}
        for what, key, n in ((fit_what, "fit", m["n_train"]),
                             (pred_what, "predict", m["n_predict"])):
            if "skip" in answer:
                rec = dict(impl="keras", what=what, skip=answer["skip"])
            else:
                t = answer[key]
                rec = dict(impl="keras", what=what, samples_per_s=n / t["median"],
                           seconds=t["median"], first_s=t["first"])
            out.append(rec)
            log(f"  {'keras':<22} {what:<48} " + (
                f"skipped: {rec['skip']}" if "skip" in rec
                else f"{rec['samples_per_s']:.0f} samples/s"))
    return out
