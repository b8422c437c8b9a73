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
