"""fastseq.data: padding, lengths and time reversal, checked against explicit loops."""
import numpy as np
import pytest

from fastseq.data import (length_mask, pad_sequences, reverse_index, reverse_padded,
                          unpad_sequences)


def random_sequences(rng, lengths, F=3):
    return [rng.standard_normal((L, F)) for L in lengths]


@pytest.mark.parametrize("lengths", [[3, 1, 5, 0, 5], [1], [4], [0, 2], [1, 1, 1]])
def test_pad_unpad_round_trip(rng, lengths):
    seqs = random_sequences(rng, lengths)
    x, got_lengths = pad_sequences(seqs, dtype=np.float64)
    T = max(lengths)
    assert x.shape == (T, len(lengths), 3) and x.dtype == np.float64
    np.testing.assert_array_equal(got_lengths, lengths)
    for b, s in enumerate(seqs):                    # explicit layout: time-major, zero padded
        for t in range(T):
            expected = s[t] if t < len(s) else np.zeros(3)
            np.testing.assert_array_equal(x[t, b], expected)
    back = unpad_sequences(x, got_lengths)
    assert len(back) == len(seqs)
    for a, s in zip(back, seqs):
        assert a.shape == s.shape
        np.testing.assert_array_equal(a, s)
    back[0][...] = 7.0 if back[0].size else 0.0     # copies, not views into x
    assert not np.any(x == 7.0)


def test_pad_dtype_and_maxlen(rng):
    seqs = random_sequences(rng, [2, 6, 4])
    x, lengths = pad_sequences(seqs)                 # float32 by default
    assert x.dtype == np.float32
    np.testing.assert_allclose(x[:6, 1], seqs[1], rtol=1e-6)
    x, lengths = pad_sequences(seqs, maxlen=3)       # truncates the long ones
    assert x.shape == (3, 3, 3)
    np.testing.assert_array_equal(lengths, [2, 3, 3])
    np.testing.assert_allclose(x[:, 1], seqs[1][:3], rtol=1e-6)
    x, lengths = pad_sequences(seqs, maxlen=8)       # pads beyond the longest
    assert x.shape == (8, 3, 3) and np.all(x[6:] == 0)


def test_pad_accepts_lists_and_int_data():
    x, lengths = pad_sequences([[[1, 2]], [[3, 4], [5, 6]]], dtype=np.float64)
    np.testing.assert_array_equal(x[:, 0], [[1, 2], [0, 0]])
    np.testing.assert_array_equal(lengths, [1, 2])


@pytest.mark.parametrize("bad, words", [
    ([], "empty"),
    ([np.zeros(3)], r"sequences\[0\] has shape"),
    ([np.zeros((2, 3)), np.zeros((2, 3, 1))], r"sequences\[1\] has shape"),
    ([np.zeros((2, 3)), np.zeros((2, 4))], r"sequences\[1\] has 4 features"),
])
def test_pad_errors(bad, words):
    with pytest.raises(ValueError, match=words):
        pad_sequences(bad)


def test_reverse_index_matches_explicit_loop(rng):
    T = 6
    lengths = rng.permutation([0, 1, 3, 6, 6, 2])
    idx = reverse_index(lengths, T)
    assert idx.shape == (T, len(lengths))
    for b, L in enumerate(lengths):
        for t in range(T):
            assert idx[t, b] == (L - 1 - t if t < L else t)


@pytest.mark.parametrize("shape", [(5, 4, 3), (1, 1, 1), (4, 3), (6, 2, 2, 3)])
def test_reverse_padded_is_an_involution(rng, shape):
    x = rng.standard_normal(shape)
    T, B = shape[:2]
    lengths = rng.integers(0, T + 1, size=B)
    y = reverse_padded(x, lengths)
    assert y.shape == x.shape
    np.testing.assert_array_equal(reverse_padded(y, lengths), x)
    for b, L in enumerate(lengths):                  # against slicing
        np.testing.assert_array_equal(y[:L, b], x[:L, b][::-1])
        np.testing.assert_array_equal(y[L:, b], x[L:, b])


def test_reverse_padded_full_length_is_flip(rng):
    x = rng.standard_normal((5, 3, 2))
    np.testing.assert_array_equal(reverse_padded(x, [5, 5, 5]), x[::-1])


def test_length_mask(rng):
    lengths = rng.permutation([0, 1, 4, 2])
    mask = length_mask(lengths, 4)
    assert mask.shape == (4, 4) and mask.dtype == np.float64
    for b, L in enumerate(lengths):
        np.testing.assert_array_equal(mask[:, b], [1.0] * L + [0.0] * (4 - L))
    assert length_mask(lengths, 4, dtype=bool).dtype == bool
