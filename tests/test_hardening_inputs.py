"""Bad input at every public entry point (issue 11): the exception type and a message that
names the argument; accepted inputs (non-contiguous, read-only, object arrays of numbers,
zero-length ragged sequences) give the same result as the plain form.

The property-based part (hypothesis) draws shapes, dtypes and values and requires success or
one of the documented exception types; ``FASTSEQ_HYPOTHESIS_EXAMPLES`` sets the examples per
test (default 50); the ``slow`` variants run 10,000 each.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.exceptions import NotFittedError

from fastseq import functional as fn
from fastseq.estimators import SequenceClassifier, SequenceRegressor, SequenceTagger
from fastseq.network import Network
from fastseq.stream import Stream

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

TINY = dict(units=3, max_iter=1, backend="numba", n_jobs=1, random_state=0)
N, T, F = 8, 4, 3


def _X(rng, n=N, t=T, f=F):
    return rng.standard_normal((n, t, f)).astype(np.float32)


def _targets(kind, X, rng):
    if kind == "regressor":
        return rng.standard_normal(len(X))
    if kind == "classifier":
        return np.arange(len(X)) % 2
    return (X[:, :, 0] > 0).astype(int)                   # tagger: one label per step


MAKERS = {"regressor": SequenceRegressor, "classifier": SequenceClassifier,
          "tagger": SequenceTagger}


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(12345)
    X = _X(rng)
    models = {k: MAKERS[k](**TINY).fit(X, _targets(k, X, rng)) for k in MAKERS}
    return models, X


def _call(model, method, X, y):
    if method == "fit":
        return model.fit(X, y)
    if method == "partial_fit":
        kwargs = {} if isinstance(model, SequenceRegressor) else {"classes": [0, 1]}
        return model.partial_fit(X, y, **kwargs)
    if method == "score":
        return model.score(X, y)
    return model.predict(X)


def _fresh_or_fitted(kind, method, fitted):
    models, _ = fitted
    if method == "fit":
        return MAKERS[kind](**TINY)
    if method == "partial_fit":
        return MAKERS[kind](**TINY)
    return models[kind]


KINDS = list(MAKERS)
METHODS = ["fit", "partial_fit", "predict", "score"]


# ------------------------------------------------------------------ estimators: bad X
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad, pattern", [(np.nan, "X contains NaN"),
                                          (np.inf, "X contains infinity")])
def test_estimator_nonfinite_X(fitted, rng, kind, method, bad, pattern):
    X = _X(rng)
    y = _targets(kind, X, rng)
    X[2, 1, 0] = bad
    with pytest.raises(ValueError, match=pattern):
        _call(_fresh_or_fitted(kind, method, fitted), method, X, y)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_estimator_nonfinite_ragged_X(fitted, rng, kind, method):
    X = [s for s in _X(rng)]
    X[3] = X[3].copy()
    X[3][0, 1] = np.nan
    y = _targets(kind, np.stack(X), rng)
    if kind == "tagger":
        y = [row for row in y]
    with pytest.raises(ValueError, match=r"X\[3\] contains NaN"):
        _call(_fresh_or_fitted(kind, method, fitted), method, X, y)


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_estimator_nonfinite_y(rng, kind, method):
    X = _X(rng)
    y = _targets(kind, X, rng).astype(float)
    y[1] = np.nan
    with pytest.raises(ValueError, match="y contains NaN"):
        model = MAKERS[kind](**TINY)
        if method == "fit":
            model.fit(X, y)
        else:
            model.partial_fit(X, y, **({} if kind == "regressor" else {"classes": [0, 1]}))


def test_regressor_y_overflowing_float32(rng):
    X = _X(rng)
    with pytest.raises(ValueError, match="y holds values too large"):
        SequenceRegressor(**TINY).fit(X, np.full(N, 1e39))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(F,), (2, N, T, F), ()])
def test_estimator_wrong_rank(fitted, rng, kind, method, shape):
    X = rng.standard_normal(shape).astype(np.float32)
    y = _targets(kind, _X(rng), rng)
    with pytest.raises(ValueError, match=r"X has shape"):
        _call(_fresh_or_fitted(kind, method, fitted), method, X, y)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["predict", "score", "partial_fit"])
def test_estimator_wrong_feature_count(fitted, rng, kind, method):
    models, _ = fitted
    model = MAKERS[kind](**dict(TINY, warm_start=True)).fit(*_fit_args(kind, rng)) \
        if method == "partial_fit" else models[kind]
    X = _X(rng, f=F + 1)
    with pytest.raises(ValueError, match=rf"X has {F + 1} features, but .* expecting {F}"):
        _call(model, method, X, _targets(kind, X, rng))


def _fit_args(kind, rng):
    X = _X(rng)
    return X, _targets(kind, X, rng)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("empty", ["array", "list"])
def test_estimator_empty_X(fitted, rng, kind, method, empty):
    X = _X(rng)[:0] if empty == "array" else []
    with pytest.raises(ValueError, match="X is empty"):
        _call(_fresh_or_fitted(kind, method, fitted), method, X, np.zeros(0, dtype=int))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_estimator_zero_timesteps_3d_refused(fitted, rng, kind, method):
    X = _X(rng)[:, :0]
    y = _targets(kind, _X(rng), rng)
    with pytest.raises(ValueError, match="X has 0 time steps"):
        _call(_fresh_or_fitted(kind, method, fitted), method, X, y)


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_estimator_zero_length_ragged_sequences_allowed(fitted, rng, kind):
    # a zero-length sequence in a ragged list is valid: its output reads the initial state
    models, _ = fitted
    model = models[kind]
    X = [_X(rng, n=1)[0], np.zeros((0, F), np.float32), _X(rng, n=1, t=2)[0],
         np.zeros((0, F), np.float32)]
    raw = model._outputs(X)[0]
    net = Network(model.network_config_, flat=model.flat_params_.astype(np.float64),
                  backend="reference")
    x = np.zeros((T, 4, F))
    x[:T, 0], x[:2, 2] = X[0], X[2]
    expect = net.forward(x, np.array([T, 0, 2, 0]), training=False)
    np.testing.assert_allclose(raw, expect, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(raw[1], raw[3])
    y = _targets(kind, np.zeros((4, 1, 1)), rng)
    MAKERS[kind](**TINY).fit(X, y)                          # training accepts them too


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_estimator_string_dtype(fitted, rng, kind, method):
    X = _X(rng).astype(str)
    with pytest.raises(TypeError, match=r"X has dtype <U"):
        _call(_fresh_or_fitted(kind, method, fitted), method, X, _targets(kind, _X(rng), rng))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_estimator_complex_dtype(fitted, rng, kind, method):
    X = _X(rng).astype(np.complex64)
    with pytest.raises(ValueError, match=r"Complex data not supported: X has dtype complex"):
        _call(_fresh_or_fitted(kind, method, fitted), method, X, _targets(kind, _X(rng), rng))


@pytest.mark.parametrize("kind", KINDS)
def test_estimator_object_dtype(fitted, rng, kind):
    models, _ = fitted
    model = models[kind]
    X = _X(rng)
    np.testing.assert_array_equal(model.predict(X.astype(object)), model.predict(X))
    bad = X.astype(object)
    bad[0, 0, 0] = "not a number"
    with pytest.raises(ValueError, match="could not convert string to float"):
        model.predict(bad)


@pytest.mark.parametrize("kind", KINDS)
def test_estimator_noncontiguous_and_readonly_inputs(fitted, rng, kind):
    models, _ = fitted
    model = models[kind]
    big = rng.standard_normal((2 * N, T, 2 * F)).astype(np.float32)
    strided = big[::2, :, ::2]                              # non-contiguous view
    assert not strided.flags.c_contiguous
    fortran = np.asfortranarray(strided)
    readonly = np.array(strided)
    readonly.setflags(write=False)
    expect = model.predict(np.ascontiguousarray(strided))
    for X in (strided, fortran, readonly, strided[:, ::-1][:, ::-1]):
        np.testing.assert_array_equal(model.predict(X), expect)
    # training on a read-only array gives the same weights as on a writable copy
    y = _targets(kind, readonly, rng)
    a = MAKERS[kind](**TINY).fit(readonly, y)
    b = MAKERS[kind](**TINY).fit(np.array(readonly), y)
    np.testing.assert_array_equal(a.flat_params_, b.flat_params_)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_estimator_mismatched_X_y(rng, kind, method):
    X = _X(rng)
    y = _targets(kind, X, rng)[:N - 3]
    with pytest.raises(ValueError, match=rf"X has {N} sequences but y has {N - 3}"):
        _call(MAKERS[kind](**TINY), method, X, y)


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_estimator_score_mismatched_X_y(fitted, rng, kind):
    models, _ = fitted
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        models[kind].score(_X(rng), np.zeros(N - 1))


@pytest.mark.parametrize("kind", ["classifier", "tagger"])
def test_unseen_labels_at_partial_fit(rng, kind):
    X = _X(rng)
    y = _targets(kind, X, rng)
    model = MAKERS[kind](**TINY).partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match=r"y contains labels \[7\] not in classes_"):
        model.partial_fit(X, np.where(y == 1, 7, y))
    with pytest.raises(ValueError, match="classes must be passed"):
        MAKERS[kind](**TINY).partial_fit(X, y)


def test_tagger_score_checks_y_against_X(fitted, rng):
    models, X = fitted
    tagger = models["tagger"]
    y = _targets("tagger", X, rng)
    expect = float(np.mean(tagger.predict(X) == y))            # the plain accuracy
    assert tagger.score(X, y) == expect
    with pytest.raises(ValueError, match=r"y has shape \(8, 3\); X needs labels of shape "
                                         r"\(8, 4\)"):
        tagger.score(X, y[:, :3])
    with pytest.raises(ValueError, match=r"y has shape \(7, 4\)"):
        tagger.score(X, y[:7])
    with pytest.raises(ValueError, match=r"y has shape \(8,\)"):
        tagger.score(X, y[:, 0])
    ragged = [X[0], X[1][:2], X[2][:0]]
    y_rag = [y[0], y[1][:2], y[2][:0]]
    pred = tagger.predict(ragged)
    assert tagger.score(ragged, y_rag) == float(np.mean(np.concatenate(pred) ==
                                                        np.concatenate(y_rag)))
    with pytest.raises(ValueError, match=r"y\[1\] has 3 labels but X\[1\] has 2 steps"):
        tagger.score(ragged, [y[0], y[1][:3], y[2][:0]])
    with pytest.raises(ValueError, match="X has 3 sequences, y has 2"):
        tagger.score(ragged, y_rag[:2])
    with pytest.raises(ValueError, match="y contains NaN"):
        tagger.score(X, np.where(y == 1, np.nan, 0.0))
    with pytest.raises(ValueError, match="no time steps to score"):
        tagger.score([X[0][:0]], [np.array([], int)])
    with pytest.raises(ValueError, match=r"sample_weight has shape \(3,\); expected \(8,\)"):
        tagger.score(X, y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight is zero for every scored step"):
        tagger.score(X, y, sample_weight=np.zeros(N))
    # weights per sequence reach every step of it: weight 1 on sequence 0 only
    w = np.zeros(N)
    w[0] = 1.0
    assert tagger.score(X, y, sample_weight=w) == float(np.mean(tagger.predict(X)[0] == y[0]))


def test_unseen_labels_at_score_count_as_errors(fitted, rng):
    models, X = fitted
    clf = models["classifier"]
    y = np.full(len(X), 99)                                 # a label the model never saw
    assert clf.score(X, y) == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_ragged_inconsistent_features_and_rank(fitted, rng, kind):
    models, _ = fitted
    model = models[kind]
    seqs = [s for s in _X(rng)]
    with pytest.raises(ValueError, match=r"X\[2\] has 2 features per step but X\[0\] has 3"):
        model.predict(seqs[:2] + [seqs[2][:, :2]] + seqs[3:])
    with pytest.raises(ValueError, match=r"X\[1\] has shape \(4,\)"):
        model.predict([seqs[0], seqs[1][:, 0]])
    with pytest.raises(TypeError, match=r"X\[1\] has dtype <U"):
        model.predict([seqs[0], seqs[1].astype(str)])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["fit", "predict"])
def test_estimator_huge_shapes_refused_before_allocation(fitted, rng, kind, method):
    # a zero-stride view: 300 sequences of 10**10 steps cost nothing until copied
    X = np.broadcast_to(np.float32(0), (300, 10**10, F))
    y = np.zeros(300, dtype=int)
    with pytest.raises(MemoryError, match=r"X has 10000000000 time steps: one .* batch"):
        _call(_fresh_or_fitted(kind, method, fitted), method, X, y)


def test_not_fitted(rng):
    for kind in KINDS:
        with pytest.raises(NotFittedError):
            MAKERS[kind](**TINY).predict(_X(rng))


# ------------------------------------------------------------------ functional API
@pytest.fixture(scope="module")
def lstm_params():
    return fn.init_params("lstm", F, 2, num_layers=2, random_state=0)


def test_functional_forward_bad_inputs(rng, lstm_params):
    X = _X(rng)
    bad = X.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        fn.forward("lstm", lstm_params, bad)
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        fn.forward("lstm", lstm_params, [X[0], bad[1]])
    h0 = np.zeros((2, N, 2), np.float32)
    h0[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="h0 contains NaN or inf"):
        fn.forward("lstm", lstm_params, X, h0=h0)
    with pytest.raises(ValueError, match=r"x has shape \(8, 4, 2\); expected \(batch, T, 3\)"):
        fn.forward("lstm", lstm_params, X[:, :, :2])
    with pytest.raises(ValueError, match=r"x has shape \(4, 3\)"):
        fn.forward("lstm", lstm_params, X[0])
    with pytest.raises(ValueError, match=r"x\[1\] has shape \(4, 2\); expected \(T_i, 3\)"):
        fn.forward("lstm", lstm_params, [X[0], X[1][:, :2]])
    for dtype in (np.complex64, object, str):
        with pytest.raises(TypeError, match="x must be numeric"):
            fn.forward("lstm", lstm_params, X.astype(dtype))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 4\]"):
        fn.forward("lstm", lstm_params, X, lengths=np.full(N, 5))
    with pytest.raises(ValueError, match=r"lengths has shape"):
        fn.forward("lstm", lstm_params, X, lengths=np.full(N - 1, 2))
    with pytest.raises(ValueError, match="sequences is empty"):
        fn.forward("lstm", lstm_params, [])
    with pytest.raises(MemoryError):
        fn.forward("lstm", lstm_params, np.broadcast_to(np.float32(0), (10**6, 10**5, F)))


def test_functional_forward_empty_and_zero_length_allowed(rng, lstm_params):
    X = _X(rng)
    out = fn.forward("lstm", lstm_params, X[:0])                # batch 0
    assert out.output.shape == (0, T, 2) and out.h_n.shape == (2, 0, 2)
    h0 = rng.standard_normal((2, N, 2)).astype(np.float32)
    out = fn.forward("lstm", lstm_params, X[:, :0], h0=h0, c0=np.zeros_like(h0))   # T = 0
    assert out.output.shape == (N, 0, 2)
    np.testing.assert_array_equal(out.h_n, h0)                  # nothing happened


def test_functional_forward_noncontiguous_readonly_same_result(rng, lstm_params):
    big = rng.standard_normal((2 * N, T, 2 * F)).astype(np.float32)
    strided = big[::2, :, ::2]
    readonly = np.array(strided)
    readonly.setflags(write=False)
    expect = fn.forward("lstm", lstm_params, np.ascontiguousarray(strided)).output
    for X in (strided, readonly, np.asfortranarray(strided)):
        np.testing.assert_array_equal(fn.forward("lstm", lstm_params, X).output, expect)


def test_functional_step_bad_inputs(rng, lstm_params):
    x_t = _X(rng)[:, 0]
    bad = x_t.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="x_t contains NaN or inf"):
        fn.step("lstm", lstm_params, bad)
    with pytest.raises(ValueError, match=r"x_t has shape \(8, 4, 3\); expected \(batch, 3\)"):
        fn.step("lstm", lstm_params, _X(rng))
    with pytest.raises(ValueError, match=r"x_t has shape \(8, 2\)"):
        fn.step("lstm", lstm_params, x_t[:, :2])
    for dtype in (np.complex64, object, str):
        with pytest.raises(TypeError, match="x_t must be numeric"):
            fn.step("lstm", lstm_params, x_t.astype(dtype))
    h = np.zeros((2, N, 2), np.float32)
    h[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="h contains NaN or inf"):
        fn.step("lstm", lstm_params, x_t, h=h)
    # read-only and strided inputs: same result as the contiguous copy
    ro = np.array(x_t)
    ro.setflags(write=False)
    np.testing.assert_array_equal(fn.step("lstm", lstm_params, ro).output,
                                  fn.step("lstm", lstm_params, x_t).output)


# ------------------------------------------------------------------ streaming
def test_stream_step_bad_inputs(fitted, rng):
    models, _ = fitted
    stream = Stream.from_estimator(models["regressor"])
    x = _X(rng)[0, 0]
    with pytest.raises(ValueError, match=r"x_t has shape \(2,\); expected \(3,\)"):
        stream.step(x[:2])
    with pytest.raises(ValueError, match=r"x_t has shape \(4, 3\)"):
        stream.step(_X(rng)[0])
    for dtype in (np.complex64, str):
        with pytest.raises(TypeError, match="x_t must be numeric"):
            stream.step(x.astype(dtype))
    with pytest.raises(ValueError, match=r"chunk has shape \(4, 2\); expected \(4, 3\)"):
        stream.push(_X(rng)[0][:, :2])
    with pytest.raises(ValueError, match=r"x_t has shape \(2, 2\); expected \(2, 3\)"):
        stream.step(_X(rng)[0][:2, :2], stream_ids=["a", "b"])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39])
def test_stream_refuses_nonfinite_input_and_keeps_state(fitted, rng, bad):
    models, _ = fitted
    stream = Stream.from_estimator(models["regressor"])
    x = _X(rng)[0]                                         # [T, F]
    stream.push(x[:2])
    stream.push(x[:2], stream_id="b")
    h, c = stream.get_state()
    x_bad = x.astype(np.float64)
    x_bad[1, 2] = bad                # 1e39 is finite in float64 but inf in the float32 model
    with pytest.raises(ValueError, match="x_t contains NaN or inf"):
        stream.step(x_bad[1])                               # the latency path
    with pytest.raises(ValueError, match="x_t contains NaN or inf"):
        stream.step(x_bad[1].astype(np.float32))             # already the model's dtype
    with pytest.raises(ValueError, match="chunk contains NaN or inf"):
        stream.push(x_bad)
    with pytest.raises(ValueError, match="x_t contains NaN or inf"):
        stream.step(x_bad[:2], stream_ids=[0, "b"])
    h2, c2 = stream.get_state()
    np.testing.assert_array_equal(h2, h)                    # no partial step happened
    np.testing.assert_array_equal(c2, c)
    np.testing.assert_array_equal(stream.get_state("b")[0], stream.get_state()[0])
    with pytest.raises(ValueError, match="h contains NaN or inf"):
        stream.set_state(np.full_like(h, bad))
    # the stream goes on as if the bad calls had never been made
    fresh = Stream.from_estimator(models["regressor"])
    fresh.push(x[:2])
    np.testing.assert_array_equal(stream.step(x[2]), fresh.step(x[2]))


# ------------------------------------------------------------------ property-based
EXAMPLES = int(os.environ.get("FASTSEQ_HYPOTHESIS_EXAMPLES", "50"))
DOCUMENTED = (ValueError, TypeError, NotFittedError, MemoryError)

_dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.bool_, np.uint8,
                           np.complex64, np.object_, np.str_, np.float16])
_values = st.sampled_from([0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e30, -1e38, 1e-40,
                           3.5, 1e300])


@st.composite
def _arrays(draw, max_rank=4, max_side=5):
    rank = draw(st.integers(0, max_rank))
    shape = tuple(draw(st.lists(st.integers(0, max_side), min_size=rank, max_size=rank)))
    dtype = draw(_dtypes)
    base = draw(hnp.arrays(np.float64, shape,
                           elements=st.floats(-1e3, 1e3, allow_nan=False, width=64)))
    if base.size and draw(st.booleans()):
        flat = base.reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = draw(_values)
    with np.errstate(all="ignore"):
        arr = base.astype(dtype) if dtype not in (np.str_, np.object_) else base.astype(dtype)
    if arr.ndim >= 1 and arr.shape[0] > 1 and draw(st.booleans()):
        arr = arr[::-1]                                     # non-contiguous view
    if draw(st.booleans()):
        arr.setflags(write=False) if arr.flags.owndata else None
    return arr


@st.composite
def _near_valid(draw, features=F):
    """A valid X ((n, T, F) or a ragged list of (T_i, F)), sometimes with one defect: a bad
    value, a float dtype or ints, a wrong feature count, a non-contiguous view."""
    n = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int32]))
    f = features if draw(st.integers(0, 4)) else draw(st.integers(1, 5))
    elems = st.floats(-5, 5, allow_nan=False, width=32)
    if draw(st.booleans()):
        T = draw(st.integers(1, 4))
        x = draw(hnp.arrays(np.float64, (n, T, f), elements=elems))
        if not draw(st.integers(0, 3)):
            x.reshape(-1)[draw(st.integers(0, x.size - 1))] = draw(_values)
        with np.errstate(all="ignore"):
            x = x.astype(dtype)
        if draw(st.booleans()):
            x = np.repeat(x, 2, axis=2)[:, :, ::2]              # strided view
        return x
    seqs = [draw(hnp.arrays(np.float64, (draw(st.integers(0, 4)), f), elements=elems))
            for _ in range(n)]
    return [s.astype(dtype) for s in seqs]


@st.composite
def _targets_for(draw, X):
    n = len(X) if isinstance(X, list) else (X.shape[0] if X.ndim else 0)
    if draw(st.integers(0, 5)) == 0:
        return draw(_arrays(max_rank=2))
    kind = draw(st.sampled_from(["labels", "values", "per_step"]))
    if kind == "labels":
        return np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    if kind == "values":
        return np.array(draw(st.lists(st.floats(-3, 3), min_size=n, max_size=n)))
    if isinstance(X, list):
        sizes = [len(s) if np.ndim(s) else 0 for s in X]
        return [np.array(draw(st.lists(st.integers(0, 1), min_size=k, max_size=k)))
                for k in sizes]
    T = X.shape[1] if X.ndim > 1 else 0
    return draw(hnp.arrays(np.int64, (n, T), elements=st.integers(0, 1)))


@st.composite
def _inputs(draw):
    """X: near-valid, an array of any rank / dtype, or a ragged list of such arrays."""
    choice = draw(st.integers(0, 5))
    if choice <= 2:
        return draw(_near_valid())
    if choice == 3:
        n = draw(st.integers(0, 4))
        return [draw(_arrays(max_rank=3)) for _ in range(n)]
    return draw(_arrays())


OUTCOMES = {}


def _count(entry, outcome, cls="-"):
    key = (entry, cls, outcome)
    OUTCOMES[key] = OUTCOMES.get(key, 0) + 1


def _input_class(x, rank=3, y=None):
    """The bad-input class of a drawn input (its first defect), for the outcome table of
    docs/robustness.md; ``rank``: what the entry point takes (3: (n, T, F), 2: (T, F),
    1: (F,))."""
    if isinstance(x, list):
        arrs = [np.asarray(s) for s in x]
        if not arrs:
            return "empty"
        if any(a.dtype.kind in "USOVc" for a in arrs):
            return "str/object/complex dtype"
        if any(a.ndim != rank - 1 for a in arrs):
            return "ragged: wrong rank"
        if any(a.shape[-1] != F for a in arrs):
            return "wrong feature count"
        if any(a.dtype.kind == "f" and not np.isfinite(a).all() for a in arrs):
            return "NaN/inf"
        cls = "valid ragged list"
    else:
        a = np.asarray(x)
        if a.dtype.kind in "USOV":
            return "str/object dtype"
        if a.dtype.kind == "c":
            return "complex dtype"
        if a.ndim != rank:
            return "wrong rank"
        if a.size == 0:
            return "empty / zero-length"
        if a.shape[-1] != F:
            return "wrong feature count"
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            return "NaN/inf"
        if a.dtype.kind == "f" and np.abs(a).max() > 1e30:
            return "huge finite values"
        cls = "valid" if a.flags.c_contiguous and a.flags.writeable else \
            "valid, strided/read-only"
    if y is not None:
        n = len(x) if isinstance(x, list) else np.asarray(x).shape[0]
        yl = len(y) if isinstance(y, list) else (np.asarray(y).shape[0]
                                                  if np.ndim(y) else None)
        if yl != n:
            return "X/y mismatch"
        yarr = y if not isinstance(y, list) else None
        if yarr is not None and np.asarray(yarr).dtype.kind in "fc" and \
                not np.isfinite(np.asarray(yarr)).all():
            return "NaN/inf in y"
    return cls


def _finite_out(result):
    arrs = result if isinstance(result, list) else [result]
    for a in arrs:
        a = np.asarray(a)
        if a.dtype.kind == "f":
            assert np.all(np.isfinite(a)), "an accepted input gave non-finite output"


def _estimator_property(fitted, kind, method, X, y):
    model = _fresh_or_fitted(kind, method, fitted)
    cls = _input_class(X, 3, y if method != "predict" else None)
    try:
        result = _call(model, method, X, y)
    except DOCUMENTED as exc:
        _count(f"{kind}.{method}", type(exc).__name__, cls)
        return
    _count(f"{kind}.{method}", "ok", cls)
    if method == "score" and kind == "regressor" and len(X) < 2:
        return                  # R^2 of one sample is undefined: scikit-learn returns NaN
    if method in ("predict", "score"):
        _finite_out(result)


HYP = dict(deadline=None, derandomize=False, database=None,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                  HealthCheck.function_scoped_fixture,
                                  HealthCheck.data_too_large])


def _estimator_test(examples):
    @settings(max_examples=examples, **HYP)
    @given(kind=st.sampled_from(KINDS), method=st.sampled_from(METHODS), data=st.data())
    def check(fitted, kind, method, data):
        X = data.draw(_inputs(), "X")
        y = data.draw(_targets_for(X) if isinstance(X, list) or X.ndim else _arrays(2), "y")
        _estimator_property(fitted, kind, method, X, y)
    return check


def _functional_test(examples):
    @settings(max_examples=examples, **HYP)
    @given(x=_inputs(), lengths=st.none() | _arrays(max_rank=2),
           h0=st.none() | _arrays(max_rank=3), cell=st.sampled_from(["lstm", "gru", "rnn"]),
           use_step=st.booleans(), batch_first=st.booleans())
    def check(x, lengths, h0, cell, use_step, batch_first):
        params = fn.init_params(cell, F, 2, random_state=0)
        cls = _input_class(x if not (use_step and isinstance(x, list)) else x[:1],
                           2 if use_step else 3)
        try:
            if use_step:
                res = fn.step(cell, params, x if not isinstance(x, list) else x[:1], h=h0)
            else:
                res = fn.forward(cell, params, x, lengths=lengths, h0=h0,
                                 batch_first=batch_first)
        except DOCUMENTED as exc:
            _count("functional." + ("step" if use_step else "forward"), type(exc).__name__,
                   cls)
            return
        _count("functional." + ("step" if use_step else "forward"), "ok", cls)
        _finite_out(res.output)
    return check


def _stream_test(examples):
    @settings(max_examples=examples, **HYP)
    @given(x=_arrays(max_rank=3) | _near_valid().map(lambda a: a[0][0] if isinstance(
        a, np.ndarray) else a[0]) | _near_valid().map(lambda a: a[0]), push=st.booleans())
    def check(fitted, x, push):
        stream = Stream.from_estimator(fitted[0]["regressor"])
        cls = _input_class(x, 2 if push else 1)
        try:
            out = stream.push(x) if push else stream.step(x)
        except DOCUMENTED as exc:
            _count("Stream." + ("push" if push else "step"), type(exc).__name__, cls)
            return
        _count("Stream." + ("push" if push else "step"), "ok", cls)
        _finite_out(out)                   # NaN/inf inputs are refused, not propagated
    return check


test_property_estimators = _estimator_test(EXAMPLES)
test_property_functional = _functional_test(EXAMPLES)
test_property_stream = _stream_test(EXAMPLES)

test_property_estimators_10k = pytest.mark.slow(_estimator_test(10_000))
test_property_functional_10k = pytest.mark.slow(_functional_test(10_000))
test_property_stream_10k = pytest.mark.slow(_stream_test(10_000))


@pytest.fixture(scope="module", autouse=True)
def _report_outcomes():
    yield
    if OUTCOMES and os.environ.get("FASTSEQ_HYPOTHESIS_REPORT"):
        for (entry, cls, outcome), count in sorted(OUTCOMES.items()):
            print(f"hypothesis outcome|{entry}|{cls}|{outcome}|{count}")


# ------------------------------------------------------------------ long sequences
def test_long_sequence_T100k_every_engine(rng):
    """T = 100,000 (ragged: the second sequence stops half-way) runs on every engine without
    a stack overflow and matches the float64 reference."""
    from conftest import engine_backends
    T_long = 100_000
    x = rng.standard_normal((2, T_long, F)).astype(np.float32)
    lengths = [T_long, T_long // 2 + 1]
    params = fn.init_params("lstm", F, 4, random_state=0)
    ref = fn.forward("lstm", {k: v.astype(np.float64) for k, v in params.items()},
                     x.astype(np.float64), lengths=lengths, backend="reference")
    for backend in engine_backends():
        if backend == "cuda":
            continue                       # the cuda engine's own suite covers its limits
        out = fn.forward("lstm", params, x, lengths=lengths, backend=backend)
        np.testing.assert_allclose(out.output, ref.output, atol=2e-5,
                                   err_msg=f"backend={backend}")
        np.testing.assert_allclose(out.h_n, ref.h_n, atol=2e-5, err_msg=f"backend={backend}")
