"""fastseq_ext: ahead-of-time compiled (Cython) kernels behind ``backend="cython"``.

Modules (each built from the ``.pyx`` of the same name by ``setup.py``):

* :mod:`fastseq_ext.activations` -- vectorizable float32 ``tanh`` / ``sigmoid`` and a
  pointwise LSTM cell, exposed to Python for testing; the inline versions used by the
  kernels live in ``activations.pxd``.
* :mod:`fastseq_ext.recurrent` -- forward, BPTT and one-step for the simple RNN, LSTM and
  GRU (both forms); the per-cell pointwise math lives in ``rnn.pxd``, ``lstm.pxd`` and
  ``gru.pxd``, the row-major BLAS wrapper in ``_blas.pxd``.

The Python-facing adapter is :mod:`fastseq.backends.cython_cpu`.
"""

import os as _os

# libgomp reads OMP_WAIT_POLICY once, when it is loaded (with the first compiled module of
# this package, unless something loaded it before). Its default lets idle threads spin
# at barriers and after a parallel region; on a busy machine (more runnable threads than
# cores) a spinning thread holds the core its partner needs: a 0.7 ms two-thread LSTM
# forward took 10-50 ms here, 1 ms with PASSIVE. So PASSIVE is set for the load only and
# removed again, leaving the environment of other runtimes (PyTorch's own libgomp, child
# processes) as it was; a value the user set is respected.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from . import activations as _activations  # noqa: F401  (loads libgomp)
    finally:
        del _os.environ["OMP_WAIT_POLICY"]
