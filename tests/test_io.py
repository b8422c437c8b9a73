"""Model files: round trips (stack, Network, estimators, pickle, skops), atomic writes, and
each refusal (truncated, bit-flipped, wrong version, pickled objects, unexpected keys,
wrong shapes) with a clear ModelFileError."""
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from fastseq import functional as F
from fastseq import io as fio
from fastseq.io import ModelFileError, load, read_metadata, save

from compare import assert_close


# ---------------------------------------------------------------- helpers shared with fuzz
def read_members(path):
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i.filename) for i in zf.infolist()}


def npy_bytes(a, allow_pickle=False):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(a), allow_pickle=allow_pickle)
    return buf.getvalue()


def write_members(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def header_of(members):
    raw = members["__fastseq__.npy"]
    arr = np.lib.format.read_array(io.BytesIO(raw))
    return json.loads(arr.tobytes().decode())


def rewrite(path, out, edit_header=None, edit_arrays=None, fix_checksum=True):
    """Rebuild a model file with a modified header and/or arrays (a hostile writer)."""
    members = read_members(path)
    header = header_of(members)
    arrays = {k[:-4]: np.lib.format.read_array(io.BytesIO(v))
              for k, v in members.items() if k != "__fastseq__.npy"}
    if edit_arrays:
        arrays = edit_arrays(arrays)
    if fix_checksum:
        header["arrays"] = {k + ".npy": {"dtype": v.dtype.str, "shape": list(v.shape)}
                            for k, v in arrays.items()}
    if edit_header:
        edit_header(header)
    if fix_checksum:
        header["sha256"] = fio._checksum(arrays, header)
    new = {"__fastseq__.npy": npy_bytes(np.frombuffer(json.dumps(header).encode(),
                                                      np.uint8))}
    new.update({k + ".npy": npy_bytes(v, allow_pickle=True) for k, v in arrays.items()})
    write_members(out, new)
    return out


def stack_file(tmp_path, rng, cell="lstm"):
    params = F.init_params(cell, 3, 4, 2, True, random_state=rng)
    path = tmp_path / "stack.npz"
    save((cell, params), path, metadata={"note": "hello"})
    return path, params


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("cell", ["lstm", "gru_classic", "rnn_relu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stack_round_trip(tmp_path, rng, cell, dtype):
    params = F.init_params(cell, 3, 5, 2, True, random_state=rng, dtype=dtype)
    path = tmp_path / "m.npz"
    assert save((cell, params), path, metadata={"run": 7}) == os.fspath(path)
    got_cell, got = load(path)
    assert got_cell.name == cell and list(got) == list(params)
    for k in params:
        np.testing.assert_array_equal(got[k], params[k])
        assert got[k].dtype == dtype and got[k].flags.writeable
    meta = read_metadata(path)
    assert meta["format"] == "fastseq-model" and meta["format_version"] == 1
    assert meta["library_version"] and meta["user"] == {"run": 7} and meta["kind"] == "stack"
    # plain NumPy reads it without pickle, weights under PyTorch names
    with np.load(path, allow_pickle=False) as data:
        np.testing.assert_array_equal(data["weight_hh_l1_reverse"],
                                      params["weight_hh_l1_reverse"])


def test_network_round_trip(tmp_path, rng):
    from fastseq.network import Network
    net = Network(dict(vocab_size=9, embedding_dim=3, cell="gru", units=4, num_layers=2,
                       head=[5], n_outputs=2), backend="reference").init_weights(1)
    path = tmp_path / "net.npz"
    save(net, path)
    back = load(path, backend="reference")
    assert back.config == net.config
    np.testing.assert_array_equal(back.flat, net.flat)
    x = rng.integers(0, 9, size=(6, 4))
    lengths = np.array([6, 1, 3, 5])
    np.testing.assert_array_equal(back.forward(x, lengths), net.forward(x, lengths))
    assert "rnn.weight_ih_l0.npy" in read_metadata(path)["arrays"]


def _fitted_estimators(rng):
    from fastseq.estimators import SequenceClassifier, SequenceRegressor, SequenceTagger
    X = [rng.normal(size=(int(n), 3)).astype(np.float32) for n in rng.integers(1, 6, 12)]
    y_cls = np.array(["cat", "dog", "eel"])[rng.integers(0, 3, 12)]
    y_reg = rng.normal(size=(12, 2))
    y_tag = [rng.integers(0, 2, size=len(x)) for x in X]
    kw = dict(units=4, max_iter=2, random_state=0, backend="reference")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return X, [SequenceClassifier(cell="gru", bidirectional=True, **kw).fit(X, y_cls),
                   SequenceRegressor(cell="lstm", head=(3,), **kw).fit(X, y_reg),
                   SequenceTagger(cell="rnn", num_layers=2, **kw).fit(X, y_tag)]


def _predictions(model, X):
    out = [model.predict(X)]
    if hasattr(model, "predict_proba"):
        out.append(model.predict_proba(X))
    return out


def _same_predictions(a, b):
    for p, q in zip(a, b):
        if isinstance(p, list):
            for u, v in zip(p, q):
                np.testing.assert_array_equal(u, v)
        else:
            np.testing.assert_array_equal(p, q)


@pytest.fixture(scope="module")
def fitted():
    pytest.importorskip("fastseq.estimators")
    return _fitted_estimators(np.random.default_rng(20261123))


def test_estimators_round_trip_file(tmp_path, fitted):
    X, models = fitted
    for model in models:
        expected = _predictions(model, X)
        path = tmp_path / f"{type(model).__name__}.npz"
        save(model, path)
        back = load(path)
        assert type(back) is type(model)
        assert back.get_params() == model.get_params()
        _same_predictions(_predictions(back, X), expected)
        for attr, value in vars(model).items():
            if attr.endswith("_") and isinstance(value, np.ndarray):
                np.testing.assert_array_equal(getattr(back, attr), value)
                assert getattr(back, attr).dtype == value.dtype
        assert back.n_iter_ == model.n_iter_ and back.loss_curve_ == model.loss_curve_
        # restored random generators continue where the saved ones were
        for attr, value in vars(model).items():
            if isinstance(value, (np.random.Generator, np.random.RandomState)):
                assert getattr(back, attr).random() == \
                    pickle.loads(pickle.dumps(value)).random(), attr
        meta = read_metadata(path)
        assert meta["estimator"]["class"] == type(model).__name__
        assert meta["network_config"] == model.network_config_


def test_estimators_pickle(fitted):
    X, models = fitted
    for model in models:
        back = pickle.loads(pickle.dumps(model))
        _same_predictions(_predictions(back, X), _predictions(model, X))


def test_estimators_skops(fitted):
    skops_io = pytest.importorskip("skops.io")
    X, models = fitted
    for model in models:
        data = skops_io.dumps(model)
        back = skops_io.loads(data, trusted=skops_io.get_untrusted_types(data=data))
        _same_predictions(_predictions(back, X), _predictions(model, X))


def test_unfitted_and_unsupported_models_are_refused(tmp_path):
    from fastseq.estimators import SequenceClassifier
    with pytest.raises(ValueError, match="not fitted"):
        save(SequenceClassifier(), tmp_path / "x.npz")
    with pytest.raises(TypeError, match="save takes"):
        save(object(), tmp_path / "x.npz")
    with pytest.raises(TypeError, match="JSON"):
        save(("rnn", F.init_params("rnn", 2, 2)), tmp_path / "x.npz",
             metadata={"f": object()})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- atomic write
def test_atomic_write_replaces_and_cleans_up(tmp_path, rng, monkeypatch):
    path, params = stack_file(tmp_path, rng)
    before = path.read_bytes()
    # a crash while writing leaves the old file untouched and no temporary behind
    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save(("lstm", params), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["stack.npz"]
    save(("lstm", {k: v * 2 for k, v in params.items()}), path)
    np.testing.assert_array_equal(load(path)[1]["bias_ih_l0"], params["bias_ih_l0"] * 2)


# ---------------------------------------------------------------- refusals
def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.npz")


def test_truncated(tmp_path, rng):
    path, _ = stack_file(tmp_path, rng)
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 1):
        (tmp_path / "t.npz").write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match="t.npz"):
            load(tmp_path / "t.npz")


def test_bit_flip_in_weights_is_caught(tmp_path, rng):
    path, params = stack_file(tmp_path, rng)
    data = bytearray(path.read_bytes())
    needle = params["weight_hh_l1"].tobytes()[:16]
    pos = bytes(data).index(needle)
    data[pos + 3] ^= 0x10
    (tmp_path / "f.npz").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="CRC|checksum|corrupted"):
        load(tmp_path / "f.npz")


def test_consistent_edit_without_new_checksum(tmp_path, rng):
    path, _ = stack_file(tmp_path, rng)
    out = rewrite(path, tmp_path / "e.npz",
                  edit_arrays=lambda a: {**a, "bias_hh_l0": a["bias_hh_l0"] + 1},
                  fix_checksum=False)
    with pytest.raises(ModelFileError, match="checksum"):
        load(out)
    # the metadata is covered too: same shapes, another cell
    out = rewrite(path, tmp_path / "e2.npz", fix_checksum=False,
                  edit_header=lambda h: h.__setitem__("cell", "lstm_relu"))
    with pytest.raises(ModelFileError, match="checksum"):
        load(out)


@pytest.mark.parametrize("version,match", [(2, "newer fastseq"), (0, "invalid format"),
                                           ("1", "not an integer")])
def test_wrong_version(tmp_path, rng, version, match):
    path, _ = stack_file(tmp_path, rng)
    out = rewrite(path, tmp_path / "v.npz",
                  edit_header=lambda h: h.__setitem__("format_version", version))
    with pytest.raises(ModelFileError, match=match):
        load(out)


def test_pickled_object_array_is_refused_without_unpickling(tmp_path, rng):
    path, _ = stack_file(tmp_path, rng)

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + os.fspath(tmp_path / "pwned"),))

    hostile = np.array([Boom()], dtype=object)
    out = rewrite(path, tmp_path / "p.npz", edit_arrays=lambda a: {**a, "bias_ih_l0": hostile})
    with pytest.raises(ModelFileError, match="object|pickled|refused"):
        load(out)
    # even with the metadata lying about the dtype
    out2 = rewrite(path, tmp_path / "p2.npz", edit_arrays=lambda a: {**a, "bias_ih_l0": hostile},
                   edit_header=lambda h: h["arrays"].__setitem__(
                       "bias_ih_l0.npy", {"dtype": "<f4", "shape": [16]}))
    with pytest.raises(ModelFileError):
        load(out2)
    assert not (tmp_path / "pwned").exists()


def test_unexpected_and_missing_keys(tmp_path, rng):
    path, _ = stack_file(tmp_path, rng)
    # an extra member not in the metadata table
    members = read_members(path)
    members["evil.npy"] = npy_bytes(np.zeros(3))
    write_members(tmp_path / "u.npz", members)
    with pytest.raises(ModelFileError, match="unexpected members"):
        load(tmp_path / "u.npz")
    # an extra weight declared consistently, but not part of the model
    out = rewrite(path, tmp_path / "u2.npz",
                  edit_arrays=lambda a: {**a, "fc.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ModelFileError, match="do not match"):
        load(out)
    out = rewrite(path, tmp_path / "m.npz",
                  edit_arrays=lambda a: {k: v for k, v in a.items() if k != "bias_hh_l1"})
    with pytest.raises(ModelFileError, match="do not match"):
        load(out)


def test_wrong_shapes(tmp_path, rng):
    path, _ = stack_file(tmp_path, rng)
    out = rewrite(path, tmp_path / "s.npz",
                  edit_arrays=lambda a: {**a, "weight_hh_l1": a["weight_hh_l1"][:, :3]})
    with pytest.raises(ModelFileError, match="weight_hh_l1 has shape"):
        load(out)
    # metadata and member disagree
    out = rewrite(path, tmp_path / "s2.npz", edit_header=lambda h: h["arrays"].__setitem__(
        "bias_ih_l0.npy", {"dtype": "<f4", "shape": [15]}))
    with pytest.raises(ModelFileError, match="metadata says"):
        load(out)


def test_network_and_estimator_metadata_attacks(tmp_path, fitted):
    from fastseq.network import Network
    net = Network(dict(n_features=2, cell="lstm", units=3, n_outputs=2)).init_weights(0)
    save(net, tmp_path / "n.npz")
    out = rewrite(tmp_path / "n.npz", tmp_path / "n2.npz",
                  edit_header=lambda h: h["network_config"].__setitem__("units", 4))
    with pytest.raises(ModelFileError, match="shape"):
        load(out)
    out = rewrite(tmp_path / "n.npz", tmp_path / "n3.npz",
                  edit_header=lambda h: h["network_config"].__setitem__("cell", "os.system"))
    with pytest.raises(ModelFileError, match="network_config"):
        load(out)
    _, models = fitted
    save(models[0], tmp_path / "e.npz")
    out = rewrite(tmp_path / "e.npz", tmp_path / "e2.npz",
                  edit_header=lambda h: h["estimator"].__setitem__("class", "subprocess.Popen"))
    with pytest.raises(ModelFileError, match="not a fastseq estimator"):
        load(out)
    out = rewrite(tmp_path / "e.npz", tmp_path / "e3.npz",
                  edit_header=lambda h: h["estimator"]["state"].__setitem__("__class__", 1))
    with pytest.raises(ModelFileError, match="refusing to set"):
        load(out)
    out = rewrite(tmp_path / "e.npz", tmp_path / "e4.npz",
                  edit_header=lambda h: h["estimator"]["state"].__setitem__(
                      "_rng", {"__generator__": {"__dict__": {"bit_generator": "Evil"}}}))
    with pytest.raises(ModelFileError, match="bit generator"):
        load(out)


def test_not_a_model_file(tmp_path):
    (tmp_path / "a.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelFileError, match="not a"):
        load(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", weight_ih_l0=np.zeros((4, 2)))
    with pytest.raises(ModelFileError, match="not a fastseq model file"):
        load(tmp_path / "b.npz")


def test_checksum_is_independent_of_member_order(rng):
    a = {"x": rng.normal(size=3), "y": np.arange(4)}
    assert fio._checksum(a) == fio._checksum(dict(reversed(list(a.items()))))
    assert fio._checksum(a) != fio._checksum({"x": a["x"], "y": np.arange(4.0)})


def test_loaded_model_predicts_like_saved_float64(tmp_path, rng):
    params = F.init_params("gru", 2, 3, random_state=rng, dtype=np.float64)
    save(("gru", params), tmp_path / "g.npz")
    cell, back = load(tmp_path / "g.npz")
    x = rng.normal(size=(2, 4, 2))
    assert_close(F.forward(cell, back, x, backend="reference").output,
                 F.forward("gru", params, x, backend="reference").output, 0.0, "output")


def test_text_generator_round_trip_keeps_vocabulary(tmp_path):
    gen_mod = pytest.importorskip("fastseq.estimators.generator")
    import warnings
    text = "the cat sat on the mat . the dog sat on the log . " * 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = gen_mod.TextGenerator(units=6, embedding_dim=4, max_iter=1, random_state=0,
                                    backend="reference").fit([text])
    save(gen, tmp_path / "g.npz")
    back = load(tmp_path / "g.npz")
    assert back.vocabulary_.tokens_ == gen.vocabulary_.tokens_
    assert type(back.tokenizer_) is type(gen.tokenizer_)
    assert back.generate("the cat", 6, random_state=3) == gen.generate("the cat", 6,
                                                                       random_state=3)
    # only fastseq's own plain helper classes can be rebuilt from a file
    out = rewrite(tmp_path / "g.npz", tmp_path / "g2.npz",
                  edit_header=lambda h: h["estimator"]["state"].__setitem__(
                      "tokenizer_", {"__object__": ["Popen", {"__dict__": {}}]}))
    with pytest.raises(ModelFileError, match="not a storable fastseq object"):
        load(out)


def test_member_flagged_encrypted_is_refused(tmp_path):
    """A flipped bit can mark a member encrypted: zipfile then raises RuntimeError, which
    must reach the user as ModelFileError like any other corruption."""
    import zipfile

    from fastseq.io import ModelFileError

    params = F.init_params("gru", 3, 4, random_state=0)
    path = tmp_path / "m.npz"
    save(("gru", params), path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    for info in infos:               # local header flag bits, and the central directory's
        data[info.header_offset + 6] |= 0x1
    cd = data.find(b"PK\x01\x02")
    while cd != -1:
        data[cd + 8] |= 0x1
        cd = data.find(b"PK\x01\x02", cd + 4)
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="encrypted"):
        load(path)
