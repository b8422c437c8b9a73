"""Refuse, before allocating, work whose buffers cannot fit in physical memory.

Used by the estimators (``fit`` / ``predict`` batches) and :func:`fastseq.functional.forward`:
where the sizes are known before any large allocation (a 3-D array, even a zero-stride view
of a huge shape, or a list whose lengths are known), a batch whose *lower-bound* need exceeds
the machine's physical memory raises a ``MemoryError`` that names the sizes, instead of an
allocation deep inside an engine (or the kernel's OOM killer later).
"""
from __future__ import annotations

import os

from .cells import make_cell


def physical_memory():
    """Bytes of physical memory, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def batch_memory_bytes(cell, units, num_layers, bidirectional, n_timesteps, batch, itemsize,
                       training, input_elements=0):
    """A lower bound on the bytes one batch needs.

    Per step, sequence and layer direction: the input projection ``xw`` (G*H) and the
    output (H) and, for inference, the next layer's input (H): ``(G + 2) * H``, one layer at
    a time; training keeps every layer's gate activations for BPTT as well:
    ``(2G + 1) * H`` per layer. Plus ``input_elements`` values of the input copy.
    """
    G = make_cell(cell).n_gates
    D = 2 if bidirectional else 1
    per_step = ((2 * G + 1) * num_layers if training else (G + 2)) * units * D
    return (int(n_timesteps) * int(batch) * per_step + int(input_elements)) * itemsize


def check_batch_memory(cell, units, num_layers, bidirectional, n_timesteps, batch, itemsize,
                       training, input_elements=0, memory=None, name="X", what=None):
    """Raise ``MemoryError`` when :func:`batch_memory_bytes` exceeds physical memory
    (``memory`` overrides it, for tests); ``name`` is the argument named in the message,
    ``what`` the work (default "training" / "prediction")."""
    memory = physical_memory() if memory is None else memory
    if not memory:
        return
    need = batch_memory_bytes(cell, units, num_layers, bidirectional, n_timesteps, batch,
                              itemsize, training, input_elements)
    if need > memory:
        what = what or ("training" if training else "prediction")
        raise MemoryError(
            f"{name} has {n_timesteps} time steps: one {what} batch of {batch} sequences of "
            f"a {num_layers}-layer {getattr(cell, 'name', cell)} with units={units} needs at "
            f"least {need / 2**30:.3g} GiB, more than this machine's {memory / 2**30:.3g} "
            "GiB; use shorter sequences (split them and carry the state with "
            "fastseq.stream), a smaller batch_size or fewer units")
