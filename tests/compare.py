"""Comparison helpers that say how far from the reference each tensor is."""
import numpy as np


def rel_error(actual, expected):
    """max |a - e| / max(1, max |e|): the error scaled by the tensor's size (llm.c style)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {actual.shape} != expected {expected.shape}")
    if actual.size == 0:
        return 0.0
    scale = max(1.0, float(np.max(np.abs(expected))))
    return float(np.max(np.abs(actual - expected))) / scale


def assert_close(actual, expected, rtol, name="tensor"):
    err = rel_error(actual, expected)
    if not err <= rtol:
        diff = np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))
        where = np.unravel_index(np.argmax(diff), diff.shape)
        raise AssertionError(
            f"{name}: relative error {err:.3e} > {rtol:.1e} (largest at {where}: "
            f"{np.asarray(actual).flat[np.ravel_multi_index(where, diff.shape)]!r} vs "
            f"{np.asarray(expected).flat[np.ravel_multi_index(where, diff.shape)]!r})")
    return err


def assert_all_close(actual: dict, expected: dict, rtol, prefix=""):
    """Compare dicts of tensors key by key; report every key's error on failure."""
    assert set(actual) == set(expected), (sorted(actual), sorted(expected))
    errors = {k: rel_error(actual[k], expected[k]) for k in expected}
    bad = {k: e for k, e in errors.items() if not e <= rtol}
    assert not bad, prefix + ", ".join(f"{k}: {e:.3e}" for k, e in sorted(errors.items())) + \
        f" (rtol {rtol:.1e})"
    return errors
