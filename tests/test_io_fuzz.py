"""Fuzz: corrupted model files (truncated, bit-flipped, overwritten, spliced, header edits)
are refused with ModelFileError, never another exception, never a crash; a corruption that
lands on bytes the format does not use (zip timestamps, padding) may load, and then gives
exactly the saved weights."""
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastseq import functional as F
from fastseq.io import ModelFileError, load, save

from test_io import header_of, npy_bytes, read_members, write_members

EXAMPLES = int(os.environ.get("FASTSEQ_FUZZ_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    params = F.init_params("gru", 3, 4, 2, True, random_state=0)
    path = d / "model.npz"
    save(("gru", params), path, metadata={"classes": ["a", "b"]})
    return d, path.read_bytes(), params


def _check(path, params):
    try:
        cell, got = load(path)
    except ModelFileError as exc:
        assert str(exc)                        # a message, naming the problem
        return "refused"
    assert cell.name == "gru" and list(got) == list(params)
    for k in params:
        np.testing.assert_array_equal(got[k], params[k])
    return "loaded"


corruption = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                                                  st.integers(0, 7)), min_size=1,
                                        max_size=4)),
    st.tuples(st.just("overwrite"), st.tuples(st.floats(0, 1, exclude_max=True),
                                              st.binary(min_size=1, max_size=64))),
    st.tuples(st.just("insert"), st.tuples(st.floats(0, 1), st.binary(min_size=1,
                                                                      max_size=32))),
)


def _corrupt(data, how):
    kind, arg = how
    data = bytearray(data)
    if kind == "truncate":
        return bytes(data[:int(arg * len(data))])
    if kind == "flip":
        for where, bit in arg:
            data[int(where * len(data))] ^= 1 << bit
        return bytes(data)
    if kind == "overwrite":
        where, blob = arg
        pos = int(where * len(data))
        data[pos:pos + len(blob)] = blob
        return bytes(data)
    where, blob = arg
    pos = int(where * len(data))
    return bytes(data[:pos] + blob + data[pos:])


@SETTINGS
@given(how=corruption)
def test_corrupted_bytes_are_refused_or_harmless(saved, how):
    d, data, params = saved
    path = d / "corrupt.npz"
    bad = _corrupt(data, how)
    path.write_bytes(bad)
    outcome = _check(path, params)
    if how[0] == "truncate":
        assert outcome == "refused"


header_edit = st.one_of(
    st.tuples(st.just("format_version"), st.one_of(st.integers(-3, 5), st.text(max_size=3),
                                                   st.none(), st.floats(allow_nan=False))),
    st.tuples(st.just("format"), st.text(max_size=12)),
    st.tuples(st.just("kind"), st.sampled_from(["stack", "network", "estimator", "x", 1])),
    st.tuples(st.just("cell"), st.one_of(st.text(max_size=10),
                                         st.sampled_from(["lstm", "rnn", "gru_classic"]))),
    st.tuples(st.just("sha256"), st.one_of(st.text(max_size=64), st.integers())),
    st.tuples(st.just("arrays"), st.one_of(st.none(), st.dictionaries(
        st.text(max_size=8), st.dictionaries(st.sampled_from(["dtype", "shape"]),
                                             st.one_of(st.text(max_size=4),
                                                       st.lists(st.integers(-2, 40),
                                                                max_size=3))),
        max_size=3))),
    st.tuples(st.just("network_config"), st.dictionaries(st.text(max_size=8),
                                                         st.integers(), max_size=3)),
)


@SETTINGS
@given(edit=header_edit)
def test_hostile_metadata_is_refused(saved, edit):
    d, data, params = saved
    members = read_members(d / "model.npz")
    header = header_of(members)
    key, value = edit
    unchanged = header.get(key) == value
    header[key] = value
    members["__fastseq__.npy"] = npy_bytes(np.frombuffer(json.dumps(header).encode(),
                                                         np.uint8))
    path = d / "hostile.npz"
    write_members(path, members)
    outcome = _check(path, params)
    if not unchanged:
        assert outcome == "refused"          # the checksum covers the metadata


@SETTINGS
@given(dtype=st.sampled_from(["O", "V8", "<f2", "<c8", "M8[s]", "|S3"]),
       name=st.sampled_from(["bias_ih_l0", "weight_hh_l1_reverse", "attr/x"]))
def test_unsafe_dtypes_are_refused(saved, dtype, name):
    d, data, params = saved
    members = read_members(d / "model.npz")
    header = header_of(members)
    value = (np.array([{"a": 1}, None], dtype=object) if dtype == "O"
             else np.zeros(4, dtype=dtype))
    header["arrays"][name + ".npy"] = {"dtype": value.dtype.str, "shape": list(value.shape)}
    members[name + ".npy"] = npy_bytes(value, allow_pickle=True)
    members["__fastseq__.npy"] = npy_bytes(np.frombuffer(json.dumps(header).encode(),
                                                         np.uint8))
    path = d / "dtype.npz"
    write_members(path, members)
    assert _check(path, params) == "refused"
