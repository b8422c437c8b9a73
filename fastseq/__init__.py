"""fastseq: fast recurrent networks (LSTM, GRU, simple RNN) on multicore CPUs."""
from ._version import __version__
from .backends import available_backends, get_backend
from .cells import CellSpec, make_cell

__all__ = ["__version__", "CellSpec", "make_cell", "get_backend", "available_backends"]
