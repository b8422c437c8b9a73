"""The jit options every kernel of this package uses, read from :mod:`fastseq._config`.

Numba only accepts ``fastmath`` as a bool, dict or (mutable) ``set``, so the frozenset of
the config is copied into a set here; nothing else changes.
"""
from __future__ import annotations

from ..._config import NUMBA_FLAGS

FLAGS = dict(NUMBA_FLAGS)
FLAGS["fastmath"] = set(NUMBA_FLAGS["fastmath"])
