"""Safe model files: NumPy ``.npz`` (``allow_pickle=False``) plus JSON metadata.

:func:`save` writes a fitted estimator, a :class:`~fastseq.network.Network`, or a bare
recurrent stack ``(cell, params)``; :func:`load` gives it back. Loading never executes code
from the file: no pickle, no ``eval``, no import of a name read from the file (the
estimator class must be one of :data:`ESTIMATOR_CLASSES`). A truncated, corrupted, altered,
hostile or incompatible file raises :class:`ModelFileError` (a ``ValueError``) saying what
is wrong.

File layout (a zip archive of ``.npy`` members, readable with ``np.load(path,
allow_pickle=False)``)::

    __fastseq__.npy     uint8 array: UTF-8 JSON metadata (below)
    <name>.npy          one array per weight, under its PyTorch name
                        ("weight_ih_l0", or "rnn.weight_ih_l0", "fc.0.weight" for networks)
    attr/<name>.npy     fitted estimator arrays (classes_, optimizer moments, ...)

Metadata::

    format            "fastseq-model"
    format_version    1 (files from a newer fastseq are refused with a clear message)
    library_version   fastseq.__version__ that wrote it
    kind              "stack" | "network" | "estimator"
    cell              the cell's name (stack)
    network_config    Network.config (network, estimator)
    estimator         {"class": "SequenceClassifier", "params": get_params(),
                       "state": fitted attributes (JSON; arrays by reference)}
    arrays            {member: {"dtype": "<f4", "shape": [...]}}  every member, exactly
    sha256            checksum over every array's name, dtype, shape and bytes, and over
                      the rest of the metadata (canonical JSON)
    user              the caller's JSON metadata (save(..., metadata=...))

Writes are atomic: a temporary file in the target directory, fsync, then ``os.replace``.
"""
from __future__ import annotations

import hashlib
import io as _io
import json
import math
import os
import tempfile
import zipfile
import zlib

import numpy as np

from ._version import __version__

__all__ = ["save", "load", "read_metadata", "ModelFileError", "FORMAT_NAME",
           "FORMAT_VERSION", "ESTIMATOR_CLASSES"]

FORMAT_NAME = "fastseq-model"
FORMAT_VERSION = 1
HEADER = "__fastseq__"
ATTR_PREFIX = "attr/"
# estimator classes a file may name; looked up in fastseq.estimators, never imported by name
ESTIMATOR_CLASSES = ("SequenceClassifier", "SequenceRegressor", "SequenceTagger",
                     "TextGenerator")
# array dtypes a file may hold (kind codes): float, signed/unsigned int, bool, unicode
_SAFE_KINDS = "fiubU"
_MAX_HEADER_BYTES = 16 * 2**20
_MAX_MEMBER_BYTES = 2**34
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
# where each estimator class lives (fixed here; never read from a file)
_ESTIMATOR_MODULES = {"SequenceClassifier": "fastseq.estimators.classifier",
                      "SequenceRegressor": "fastseq.estimators.regressor",
                      "SequenceTagger": "fastseq.estimators.tagger",
                      "TextGenerator": "fastseq.estimators.generator"}
# plain fastseq helper objects an estimator may hold (text vocabulary, tokenizers): stored as
# their attribute dict, rebuilt without calling any code of theirs but object.__new__
_PLAIN_OBJECTS = {"Vocabulary": "fastseq.text", "WordTokenizer": "fastseq.text",
                  "CharTokenizer": "fastseq.text"}


def _fastseq_class(table, name):
    """The class ``name`` from a fixed table of fastseq modules, or None."""
    import importlib
    module = table.get(name) if isinstance(name, str) else None
    if module is None:
        return None
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


class ModelFileError(ValueError):
    """The file is not a valid fastseq model file (truncated, corrupted, altered, hostile or
    from an incompatible version); the message says which check failed."""


# ================================================================ encoding of fitted state
class _Encoder:
    """Turns fitted state into JSON plus named arrays; refuses anything else."""

    def __init__(self):
        self.arrays = {}

    def array(self, key, value):
        value = np.asarray(value)
        if value.dtype.kind == "O":
            if not all(isinstance(v, str) for v in value.ravel()):
                raise TypeError(f"{key}: object arrays can only be stored when they hold "
                                "strings; use pickle for this model")
            self.arrays[key] = value.astype(str)
            return {"__array__": key, "object": True}
        if value.dtype.kind not in _SAFE_KINDS or value.dtype.fields is not None:
            raise TypeError(f"{key}: arrays of dtype {value.dtype} cannot be stored safely")
        self.arrays[key] = np.ascontiguousarray(value)
        return {"__array__": key}

    def encode(self, value, key):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
            return int(value)
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, (float, np.floating)):
            value = float(value)
            if math.isfinite(value):
                return value
            return {"__float__": repr(value)}           # inf, -inf, nan
        if isinstance(value, np.ndarray):
            return self.array(key, value)
        if isinstance(value, np.dtype) or (isinstance(value, type) and
                                           issubclass(value, np.generic)):
            return {"__dtype__": np.dtype(value).str}
        if isinstance(value, os.PathLike) and isinstance(os.fspath(value), str):
            return os.fspath(value)                     # e.g. checkpoint_path: a plain str
        if isinstance(value, np.random.Generator):
            state = value.bit_generator.state
            return {"__generator__": self.encode(state, key + "/state")}
        if isinstance(value, np.random.RandomState):
            name, keys, pos, has_gauss, cached = value.get_state()
            return {"__randomstate__": [name, self.array(key + "/keys", keys), int(pos),
                                        int(has_gauss), float(cached)]}
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value):
                return {"__dict__": {k: self.encode(v, f"{key}/{k}")
                                     for k, v in value.items()}}
            return {"__pairs__": [[self.encode(k, f"{key}/k{i}"),
                                   self.encode(v, f"{key}/v{i}")]
                                  for i, (k, v) in enumerate(value.items())]}
        if isinstance(value, (list, tuple)):
            tag = "__list__" if isinstance(value, list) else "__tuple__"
            return {tag: [self.encode(v, f"{key}/{i}") for i, v in enumerate(value)]}
        name = type(value).__name__
        if _fastseq_class(_PLAIN_OBJECTS, name) is type(value):
            return {"__object__": [name, self.encode(dict(vars(value)), key + "/" + name)]}
        raise TypeError(f"{key}: a {type(value).__name__} cannot be stored in a safe model "
                        "file; use pickle or skops for this model")


def _decode(value, arrays, where):
    """Inverse of :class:`_Encoder`; every malformed entry is a ModelFileError."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        raise ModelFileError(f"{where}: unexpected bare list in the metadata")
    if not isinstance(value, dict) or len(value) not in (1, 2):
        raise ModelFileError(f"{where}: malformed entry in the metadata")
    if "__array__" in value:
        key = value["__array__"]
        if not isinstance(key, str) or key not in arrays:
            raise ModelFileError(f"{where}: refers to a missing array {key!r}")
        arr = arrays[key]
        if value.get("object"):
            if arr.dtype.kind != "U":
                raise ModelFileError(f"{where}: string array expected for {key!r}")
            arr = arr.astype(object)
        return arr
    (tag, body), = value.items()
    if tag == "__float__":
        if body not in ("inf", "-inf", "nan"):
            raise ModelFileError(f"{where}: bad float {body!r}")
        return float(body)
    if tag == "__dtype__":
        try:
            dt = np.dtype(str(body))
        except TypeError as exc:
            raise ModelFileError(f"{where}: bad dtype {body!r}") from exc
        if dt.kind not in _SAFE_KINDS:
            raise ModelFileError(f"{where}: dtype {body!r} is not allowed")
        return dt.type
    if tag == "__dict__":
        if not isinstance(body, dict):
            raise ModelFileError(f"{where}: malformed dict")
        return {k: _decode(v, arrays, f"{where}.{k}") for k, v in body.items()}
    if tag == "__pairs__":
        if not isinstance(body, list) or not all(isinstance(p, list) and len(p) == 2
                                                 for p in body):
            raise ModelFileError(f"{where}: malformed mapping")
        out = {}
        for k, v in body:
            k = _decode(k, arrays, where)
            if not isinstance(k, (int, float, str, bool, type(None))):
                raise ModelFileError(f"{where}: unhashable key")
            out[k] = _decode(v, arrays, where)
        return out
    if tag in ("__list__", "__tuple__"):
        if not isinstance(body, list):
            raise ModelFileError(f"{where}: malformed list")
        items = [_decode(v, arrays, f"{where}[{i}]") for i, v in enumerate(body)]
        return items if tag == "__list__" else tuple(items)
    if tag == "__generator__":
        state = _decode(body, arrays, where)
        name = state.get("bit_generator") if isinstance(state, dict) else None
        if name not in _BIT_GENERATORS:
            raise ModelFileError(f"{where}: unknown bit generator {name!r}")
        bitgen = getattr(np.random, name)()
        try:
            bitgen.state = state
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelFileError(f"{where}: invalid generator state ({exc})") from None
        return np.random.Generator(bitgen)
    if tag == "__randomstate__":
        if not isinstance(body, list) or len(body) != 5:
            raise ModelFileError(f"{where}: malformed RandomState")
        rs = np.random.RandomState()
        try:
            rs.set_state((str(body[0]), _decode(body[1], arrays, where), int(body[2]),
                          int(body[3]), float(body[4])))
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{where}: invalid RandomState ({exc})") from None
        return rs
    if tag == "__object__":
        if not isinstance(body, list) or len(body) != 2:
            raise ModelFileError(f"{where}: malformed object")
        cls = _fastseq_class(_PLAIN_OBJECTS, body[0])
        if cls is None:
            raise ModelFileError(f"{where}: {body[0]!r} is not a storable fastseq object")
        state = _decode(body[1], arrays, where)
        if not isinstance(state, dict) or not all(
                isinstance(k, str) and k.isidentifier() and not k.startswith("__")
                for k in state):
            raise ModelFileError(f"{where}: malformed {body[0]} state")
        obj = object.__new__(cls)
        obj.__dict__.update(state)
        return obj
    raise ModelFileError(f"{where}: unknown entry {tag!r} in the metadata")


# ================================================================ checksum
def _checksum(arrays, header=None):
    """sha256 over every array (name, dtype, shape, bytes) and the metadata (canonical JSON
    without the checksum itself)."""
    h = hashlib.sha256()
    if header is not None:
        meta = {k: v for k, v in header.items() if k != "sha256"}
        h.update(json.dumps(meta, sort_keys=True, separators=(",", ":"),
                            allow_nan=False).encode("utf-8") + b"\0")
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode("utf-8") + b"\0" + a.dtype.str.encode() + b"\0" +
                 repr(tuple(a.shape)).encode() + b"\0")
        h.update(a.tobytes())
    return h.hexdigest()


# ================================================================ save
def _what(model):
    """-> (kind, metadata dict, {member: array}) for a stack, Network or estimator."""
    from .network import Network
    if isinstance(model, tuple) and len(model) == 2:
        from .cells import make_cell
        from .functional import validate_params
        cell = make_cell(model[0])
        params = model[1]
        validate_params(cell, params)
        return "stack", {"cell": cell.name}, {k: np.asarray(v) for k, v in params.items()}
    if isinstance(model, Network):
        return "network", {"network_config": model.config}, dict(model.params)
    cls = type(model).__name__
    if cls in ESTIMATOR_CLASSES and hasattr(model, "get_params"):
        meta, arrays, enc = _estimator_payload(model)
        arrays.update(enc.arrays)
        return "estimator", meta, arrays
    raise TypeError("save takes a fitted fastseq estimator, a fastseq Network or a "
                    f"(cell, params) tuple; got {type(model).__name__}")


def _estimator_payload(model, skip=(), overrides=None):
    """-> (metadata, weight arrays, encoder) of a fitted estimator. ``skip``: attribute names
    left out; ``overrides``: {attribute: value} stored instead of the live attribute (the
    checkpoint writer uses both while ``fit`` runs). The encoder's arrays (``attr/...``) are
    not yet merged: a caller may encode more into it first."""
    from .network import Network
    cls = type(model).__name__
    if not hasattr(model, "flat_params_"):
        raise ValueError(f"this {cls} is not fitted yet; fit it before saving")
    enc = _Encoder()
    own = model.get_params(deep=False)
    params = {k: enc.encode(v, f"{ATTR_PREFIX}param/{k}") for k, v in own.items()}
    values = dict(vars(model))
    values.update(overrides or {})
    state = {}
    for name, value in values.items():
        if name in own or name == "flat_params_" or name in skip:
            continue
        if name.startswith("__") or not (name.endswith("_") or name.startswith("_")):
            continue
        state[name] = enc.encode(value, ATTR_PREFIX + name)
    net = Network(model.network_config_, flat=np.asarray(model.flat_params_))
    meta = {"network_config": model.network_config_,
            "estimator": {"class": cls, "params": params, "state": state}}
    return meta, dict(net.params), enc


def save(model, path, *, metadata=None):
    """Write ``model`` to ``path`` (a ``.npz`` archive; see the module docstring).

    Parameters
    ----------
    model : fitted fastseq estimator, :class:`~fastseq.network.Network`, or a
        ``(cell, params)`` tuple (a recurrent stack)
    path : str or os.PathLike
    metadata : optional JSON-serializable dict stored under ``"user"``

    Returns the path. The write is atomic: a crash leaves either the old file or the new.
    """
    kind, meta, arrays = _what(model)
    return _write(kind, meta, arrays, path, metadata)


def _write(kind, meta, arrays, path, metadata=None):
    """The header (with checksum) and the arrays, written atomically to ``path``."""
    for name in arrays:
        if name == HEADER or not name or name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"invalid array name {name!r}")
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
              "library_version": __version__, "kind": kind, **meta,
              "arrays": {name + ".npy": {"dtype": np.asarray(a).dtype.str,
                                         "shape": list(np.shape(a))}
                         for name, a in arrays.items()}}
    if metadata is not None:
        header["user"] = metadata
    try:
        header["sha256"] = _checksum(arrays, header)
        text = json.dumps(header, allow_nan=False, sort_keys=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serializable: {exc}") from None
    members = {HEADER: np.frombuffer(text.encode("utf-8"), dtype=np.uint8)}
    members.update({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastseq-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **members)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# ================================================================ load
def _read_member_header(raw, name):
    """Parse a .npy member's header from bytes -> (dtype, shape, fortran, data offset)."""
    fh = _io.BytesIO(raw)
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise ModelFileError(f"{name}: unsupported .npy version {version}")
    return dtype, shape, fortran, fh.tell()


def _read_archive(path):
    """-> (header dict, {name without .npy: array}); every check that needs no model."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{path}: not a fastseq model file (not a valid .npz/zip "
                             f"archive: {exc})") from None
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise ModelFileError(f"{path}: duplicate members in the archive")
        if HEADER + ".npy" not in names:
            raise ModelFileError(f"{path}: no {HEADER} metadata; not a fastseq model file")
        info = {i.filename: i for i in infos}
        for i in infos:
            if i.flag_bits & 0x1:                 # zipfile would raise RuntimeError
                raise ModelFileError(f"{path}: member {i.filename} is marked encrypted; "
                                     f"fastseq model files never are")
            if i.file_size > _MAX_MEMBER_BYTES:
                raise ModelFileError(f"{path}: member {i.filename} declares "
                                     f"{i.file_size} bytes; refusing")
        if info[HEADER + ".npy"].file_size > _MAX_HEADER_BYTES:
            raise ModelFileError(f"{path}: metadata larger than {_MAX_HEADER_BYTES} bytes")
        raw = zf.read(HEADER + ".npy")                # CRC-checked
        dtype, shape, _, offset = _read_member_header(raw, HEADER)
        if dtype != np.uint8 or len(shape) != 1 or len(raw) != offset + shape[0]:
            raise ModelFileError(f"{path}: malformed metadata member")
        try:
            header = json.loads(raw[offset:].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"{path}: metadata is not valid JSON ({exc})") from None
        _check_header(header, path)
        declared = header["arrays"]
        present = set(names) - {HEADER + ".npy"}
        unexpected = sorted(present - set(declared))
        missing = sorted(set(declared) - present)
        if unexpected:
            raise ModelFileError(f"{path}: unexpected members {unexpected}")
        if missing:
            raise ModelFileError(f"{path}: missing members {missing}")
        arrays = {}
        for member, spec in declared.items():
            if not member.endswith(".npy"):
                raise ModelFileError(f"{path}: member {member!r} is not a .npy array")
            want_dtype = _declared_dtype(spec, member, path)
            want_shape = _declared_shape(spec, member, path)
            raw = zf.read(member)                    # CRC-checked
            dtype, shape, fortran, offset = _read_member_header(raw, member)
            if dtype.kind not in _SAFE_KINDS or dtype.fields is not None or dtype.hasobject:
                raise ModelFileError(f"{path}: member {member} has dtype {dtype}; object, "
                                     "pickled or structured arrays are refused")
            if dtype != want_dtype or tuple(shape) != want_shape:
                raise ModelFileError(f"{path}: member {member} is {dtype}{tuple(shape)}, "
                                     f"the metadata says {want_dtype}{want_shape}")
            if len(raw) - offset != dtype.itemsize * math.prod(shape):
                raise ModelFileError(f"{path}: member {member} has "
                                     f"{len(raw) - offset} data bytes; expected "
                                     f"{dtype.itemsize * math.prod(shape)}")
            arr = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=offset)
            arr = arr.reshape(shape, order="F" if fortran else "C")
            arrays[member[:-4]] = np.array(arr, order="C")     # writable, owned copy
    try:
        ok = _checksum(arrays, header) == header["sha256"]
    except ValueError:          # NaN/inf smuggled into the metadata
        ok = False
    if not ok:
        raise ModelFileError(f"{path}: checksum mismatch: the weights or the metadata were "
                             "altered or corrupted after saving")
    return header, arrays


def _declared_dtype(spec, member, path):
    try:
        dt = np.dtype(str(spec["dtype"]))
    except (TypeError, KeyError, ValueError) as exc:
        raise ModelFileError(f"{path}: bad dtype for {member} ({exc})") from None
    if dt.kind not in _SAFE_KINDS:
        raise ModelFileError(f"{path}: member {member} declares dtype {dt}; refused")
    return dt


def _declared_shape(spec, member, path):
    shape = spec.get("shape") if isinstance(spec, dict) else None
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise ModelFileError(f"{path}: bad shape for {member}")
    return tuple(shape)


def _check_header(header, path):
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not a fastseq model file (format is "
                             f"{header.get('format') if isinstance(header, dict) else None!r})")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{path}: format_version is missing or not an integer")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: format version {version} was written by a newer "
                             f"fastseq ({header.get('library_version')}); this fastseq "
                             f"({__version__}) reads version {FORMAT_VERSION}: upgrade")
    if version < 1:
        raise ModelFileError(f"{path}: invalid format version {version}")
    if header.get("kind") not in ("stack", "network", "estimator"):
        raise ModelFileError(f"{path}: unknown model kind {header.get('kind')!r}")
    if not isinstance(header.get("arrays"), dict):
        raise ModelFileError(f"{path}: metadata has no array table")
    if not isinstance(header.get("sha256"), str):
        raise ModelFileError(f"{path}: metadata has no checksum")


def read_metadata(path):
    """The file's JSON metadata (after every integrity check), without building a model."""
    return _read_archive(os.fspath(path))[0]


def _expect_arrays(arrays, shapes, path, what):
    """Arrays named exactly as ``shapes`` with those shapes (float32/float64, one dtype)."""
    names = {k for k in arrays if not k.startswith(ATTR_PREFIX)}
    if names != set(shapes):
        raise ModelFileError(f"{path}: weights {sorted(names ^ set(shapes))} do not match "
                             f"the {what}")
    dtypes = set()
    for name, shape in shapes.items():
        a = arrays[name]
        if tuple(a.shape) != tuple(shape):
            raise ModelFileError(f"{path}: weight {name} has shape {a.shape}; the {what} "
                                 f"needs {tuple(shape)}")
        if a.dtype not in (np.float32, np.float64):
            raise ModelFileError(f"{path}: weight {name} has dtype {a.dtype}")
        dtypes.add(a.dtype)
    if len(dtypes) > 1:
        raise ModelFileError(f"{path}: weights mix dtypes {sorted(map(str, dtypes))}")
    return dtypes.pop() if dtypes else np.dtype(np.float32)


def _network_from(header, arrays, path, backend):
    from .network import Network
    config = header.get("network_config")
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: metadata has no network_config")
    try:
        probe = Network(config, backend=backend)
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path}: invalid network_config ({exc})") from None
    shapes = {name: shape for name, (_, shape) in probe.layout.items()}
    dtype = _expect_arrays(arrays, shapes, path, "network_config")
    net = Network(config, dtype=dtype, backend=backend)
    for name in shapes:
        net.params[name][...] = arrays[name]
    return net


def load(path, *, backend=None):
    """Read a model written by :func:`save`.

    Returns what was saved: the estimator (same class, parameters and fitted state), a
    :class:`~fastseq.network.Network`, or ``(CellSpec, params)`` for a stack. ``backend``
    (optional) overrides the engine of a Network / estimator.

    Raises :class:`ModelFileError` for any invalid file, ``FileNotFoundError`` if there is
    none.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    try:
        header, arrays = _read_archive(path)
        return _build(header, arrays, path, backend)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
            TypeError, IndexError, OverflowError, UnicodeError, NotImplementedError,
            AttributeError, RecursionError, MemoryError) as exc:
        raise ModelFileError(f"{path}: corrupted or invalid model file "
                             f"({type(exc).__name__}: {exc})") from None


def _build(header, arrays, path, backend):
    kind = header["kind"]
    if kind == "stack":
        from .cells import make_cell
        from .functional import param_shapes
        try:
            cell = make_cell(header.get("cell"))
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: invalid cell ({exc})") from None
        w_ih, w_hh = arrays.get("weight_ih_l0"), arrays.get("weight_hh_l0")
        if w_ih is None or w_hh is None or w_ih.ndim != 2 or w_hh.ndim != 2 \
                or min(w_ih.shape + w_hh.shape) < 1:
            raise ModelFileError(f"{path}: the stack has no valid weight_ih_l0/weight_hh_l0")
        L = sum(1 for k in arrays if k.startswith("weight_ih_l") and
                not k.endswith("_reverse"))
        shapes = param_shapes(cell, int(w_ih.shape[1]), int(w_hh.shape[1]), max(L, 1),
                              "weight_ih_l0_reverse" in arrays)
        _expect_arrays(arrays, shapes, path, f"{cell.name} stack")
        return cell, {name: arrays[name] for name in shapes}
    if kind == "network":
        return _network_from(header, arrays, path, "auto" if backend is None else backend)
    return _estimator_from(header, arrays, path, backend)


def _estimator_from(header, arrays, path, backend):
    spec = header.get("estimator")
    if not isinstance(spec, dict) or not isinstance(spec.get("params"), dict) \
            or not isinstance(spec.get("state"), dict):
        raise ModelFileError(f"{path}: malformed estimator metadata")
    name = spec.get("class")
    cls = _fastseq_class(_ESTIMATOR_MODULES, name) if name in ESTIMATOR_CLASSES else None
    if cls is None:
        raise ModelFileError(f"{path}: estimator class {name!r} is not a fastseq estimator "
                             f"({', '.join(ESTIMATOR_CLASSES)})")
    params = {k: _decode(v, arrays, f"params.{k}") for k, v in spec["params"].items()}
    valid = cls().get_params(deep=False)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ModelFileError(f"{path}: {name} has no parameters {unknown}")
    if backend is not None:
        params["backend"] = backend
    model = cls(**params)
    net = _network_from(header, arrays, path, model.backend)
    for attr, value in spec["state"].items():
        if not isinstance(attr, str) or not attr.isidentifier() or attr.startswith("__") \
                or not (attr.endswith("_") or attr.startswith("_")) or attr in valid:
            raise ModelFileError(f"{path}: refusing to set attribute {attr!r}")
        setattr(model, attr, _decode(value, arrays, attr))
    if model.__dict__.get("network_config_") != header["network_config"]:
        model.network_config_ = header["network_config"]
    model.flat_params_ = net.flat
    return model
