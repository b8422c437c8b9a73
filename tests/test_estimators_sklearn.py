"""fastseq estimators inside scikit-learn: Pipeline, GridSearchCV, cross_val_score, with 3-D
and ragged input; the sequence-aware scaler and the sktime/aeon layout helper."""
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastseq.estimators import SequenceClassifier, SequenceRegressor, SequenceTagger
from fastseq.preprocessing import (SequenceScaler, check_sequences, from_channels_first,
                                   to_channels_first)

KW = dict(units=4, max_iter=3, random_state=0)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _data(rng, ragged, n=24):
    if ragged:
        X = [rng.standard_normal((int(rng.integers(1, 6)), 2)) * 5 + 3 for _ in range(n)]
    else:
        X = rng.standard_normal((n, 4, 2)) * 5 + 3
    y = np.array([int(s[:, 0].mean() > 3) for s in X])
    return X, y


@pytest.mark.parametrize("ragged", [False, True])
def test_pipeline_with_sequence_scaler(rng, ragged):
    X, y = _data(rng, ragged)
    pipe = make_pipeline(SequenceScaler(), SequenceClassifier(**KW)).fit(X, y)
    assert pipe.predict(X).shape == (len(y),)
    # the pipeline is the scaler then the model, exactly
    scaled = SequenceScaler().fit_transform(X)
    direct = SequenceClassifier(**KW).fit(scaled, y)
    np.testing.assert_array_equal(pipe.predict_proba(X), direct.predict_proba(scaled))


@pytest.mark.parametrize("ragged", [False, True])
def test_grid_search(rng, ragged):
    X, y = _data(rng, ragged)
    search = GridSearchCV(SequenceClassifier(**KW), {"units": [2, 3], "cell": ["gru", "lstm"]},
                          cv=3).fit(X, y)
    assert search.best_params_["units"] in (2, 3)
    assert len(search.cv_results_["mean_test_score"]) == 4
    assert search.predict(X).shape == (len(y),)


@pytest.mark.parametrize("ragged", [False, True])
def test_cross_val_score_regressor_and_tagger(rng, ragged):
    X, y = _data(rng, ragged)
    target = np.array([s[:, 1].sum() for s in X])
    scores = cross_val_score(make_pipeline(SequenceScaler(), SequenceRegressor(**KW)), X,
                             target, cv=KFold(3))
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    tags = [(s[:, 0] > 3).astype(int) for s in X] if ragged else (X[:, :, 0] > 3).astype(int)
    scores = cross_val_score(SequenceTagger(**KW), X, tags, cv=KFold(3))
    assert np.all((0 <= scores) & (scores <= 1))


def test_flattened_rows_work_with_2d_tools(rng):
    """dask-ml style: (n, T*F) rows plus n_timesteps, after a plain StandardScaler."""
    X = rng.standard_normal((20, 3 * 2))
    y = (X[:, 0] > 0).astype(int)
    pipe = make_pipeline(StandardScaler(), SequenceClassifier(n_timesteps=3, **KW))
    assert cross_val_score(pipe, X, y, cv=2).shape == (2,)
    assert clone(pipe).fit(X, y)[-1].n_features_in_ == 2


def test_sequence_scaler_ignores_padding_and_keeps_the_layout(rng):
    X = [rng.standard_normal((L, 3)) * 4 + 1 for L in (5, 1, 3, 0)]
    sc = SequenceScaler().fit(X)
    steps = np.vstack(X)
    np.testing.assert_allclose(sc.mean_, steps.mean(0))
    np.testing.assert_allclose(sc.scale_, steps.std(0))
    out = sc.transform(X)
    assert isinstance(out, list) and [len(s) for s in out] == [5, 1, 3, 0]
    np.testing.assert_allclose(np.vstack(out).mean(0), 0, atol=1e-12)
    back = sc.inverse_transform(out)
    for a, b in zip(back, X):
        np.testing.assert_allclose(a, b)
    X3 = rng.standard_normal((4, 5, 3))
    assert SequenceScaler().fit_transform(X3).shape == (4, 5, 3)
    flat = SequenceScaler(n_timesteps=5).fit_transform(X3.reshape(4, 15))
    np.testing.assert_allclose(flat.reshape(4, 5, 3), SequenceScaler().fit_transform(X3))
    assert SequenceScaler().fit(X3).transform(X3.astype(np.float32)).dtype == np.float32


def test_channels_first_helpers(rng):
    panel = rng.standard_normal((4, 3, 7))                # sktime / aeon (n, channels, T)
    X = from_channels_first(panel)
    assert X.shape == (4, 7, 3)
    np.testing.assert_array_equal(X[2, 5], panel[2, :, 5])
    np.testing.assert_array_equal(to_channels_first(X), panel)
    ragged = [rng.standard_normal((3, L)) for L in (2, 5)]
    out = from_channels_first(ragged)
    assert [s.shape for s in out] == [(2, 3), (5, 3)]
    with pytest.raises(ValueError, match="channels"):
        from_channels_first(rng.standard_normal((4, 3)))


def test_check_sequences_forms(rng):
    X3 = rng.standard_normal((3, 4, 2))
    x, lengths, fmt = check_sequences(X3)
    assert x.shape == (4, 3, 2) and x.dtype == np.float32 and fmt.kind == "3d"
    np.testing.assert_array_equal(x[1, 2], X3[2, 1].astype(np.float32))
    x, lengths, fmt = check_sequences(list(X3[:, :2]) + [X3[0]])
    assert x.shape == (4, 4, 2) and list(lengths) == [2, 2, 2, 4] and fmt.kind == "ragged"
    assert not x[2:, 0].any()                              # zero padding
    x, lengths, fmt = check_sequences(X3.reshape(3, 8), n_timesteps=4, dtype=np.float64)
    np.testing.assert_array_equal(x, X3.transpose(1, 0, 2))
    x, lengths, fmt = check_sequences(X3[:, 0])
    assert x.shape == (1, 3, 2) and fmt.kind == "2d"
    with pytest.raises(ValueError, match="NaN"):
        check_sequences(np.full((2, 2, 2), np.nan))
    with pytest.raises(ValueError, match="expected"):
        check_sequences(np.zeros((2, 2, 2, 2)))
