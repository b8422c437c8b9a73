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
from .estimators import SequenceClassifier, SequenceRegressor, SequenceTagger, TextGenerator
from .estimators.base import FitInterruptedWarning, TrainingDivergedError
from .preprocessing import SequenceScaler, from_channels_first, to_channels_first
from .io import load, save
from .stream import Stream

__all__ = [
    "__version__", "CellSpec", "make_cell", "get_backend", "available_backends",
    "SequenceClassifier", "SequenceRegressor", "SequenceTagger", "TextGenerator",
    "SequenceScaler", "from_channels_first", "to_channels_first",
    "TrainingDivergedError", "FitInterruptedWarning",
    "Stream", "save", "load", "functional", "io", "stream", "exchange",
]
