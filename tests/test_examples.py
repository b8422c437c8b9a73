"""The examples, in their reduced (--quick) versions, and the demo."""
import importlib.util
import os

import pytest

from fastseq import demo

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_example_quick(capsys):
    accuracy = _load("digits_lstm").main(["--quick", "--n-jobs", "1"])
    assert accuracy > 0.6                        # the full run reaches >= 0.95
    out = capsys.readouterr().out
    assert "test accuracy" in out and "samples/s" in out


def test_forecasting_example_quick(capsys):
    model_rmse, base_rmse = _load("forecasting_sunspots").main(["--quick", "--n-jobs", "1"])
    assert model_rmse < base_rmse
    assert "baseline RMSE" in capsys.readouterr().out


def test_tagging_example_quick(capsys):
    f1_model, f1_base = _load("tagging_word_boundaries").main(["--quick", "--n-jobs", "1"])
    assert f1_model > 0.5
    assert "bigram baseline" in capsys.readouterr().out


def test_demo_quick(capsys):
    assert demo.main(quick=True, n_jobs=1) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "samples/s" in out
    r = demo.run(quick=True, max_iter=2, n_jobs=1)
    assert 0 <= r["accuracy"] <= 1 and r["epochs"] == 2


@pytest.mark.slow
def test_digits_example_full_reaches_095():
    assert _load("digits_lstm").main(["--n-jobs", "1"]) >= 0.95


@pytest.mark.slow
def test_forecasting_example_full_beats_baseline_by_30_percent():
    model_rmse, base_rmse = _load("forecasting_sunspots").main(["--n-jobs", "1"])
    assert model_rmse < 0.7 * base_rmse
