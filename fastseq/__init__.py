"""fastseq: fast recurrent networks (LSTM, GRU, simple RNN) on multicore CPUs.

Estimators (scikit-learn API): :class:`SequenceClassifier`, :class:`SequenceRegressor`,
:class:`SequenceTagger`, :class:`TextGenerator`. Embedding: :mod:`fastseq.functional`
(stable low-level API), :class:`Stream` (stateful streaming inference), :mod:`fastseq.io`
(safe model files), :mod:`fastseq.exchange` (PyTorch / Keras weights), ``fastseq.onnx``
(ONNX export; imported on use). Engines: :func:`get_backend`, :func:`available_backends`.
"""
from ._version import __version__
from .backends import available_backends, get_backend
from .cells import CellSpec, make_cell
from . import exchange, functional, io, stream
from .estimators import SequenceClassifier, SequenceRegressor, SequenceTagger
from .estimators.generator import TextGenerator
from .io import load, save
from .stream import Stream

__all__ = [
    "__version__", "CellSpec", "make_cell", "get_backend", "available_backends",
    "SequenceClassifier", "SequenceRegressor", "SequenceTagger", "TextGenerator",
    "Stream", "save", "load", "functional", "io", "stream", "exchange",
]
