"""fastseq_ext: ahead-of-time compiled (Cython) kernels behind ``backend="cython"``.

Modules (each built from the ``.pyx`` of the same name by ``setup.py``):

* :mod:`fastseq_ext.activations` -- vectorizable float32 ``tanh`` / ``sigmoid`` and a
  pointwise LSTM cell, exposed to Python for testing; the inline versions used by the
  kernels live in ``activations.pxd``.
* :mod:`fastseq_ext.rnn`, :mod:`fastseq_ext.lstm`, :mod:`fastseq_ext.gru` -- forward, BPTT
  and one-step (``step``, shape checks in ``_step.pxd``) per cell, float32 and float64;
  the per-step products run on the register-blocked GEMM of ``_smallgemm.h`` (no call,
  no packing; each row computed the same way whatever the batch), the gates of a row in
  one fused loop of ``_cells.h`` (activations in ``_act.h``); the OpenMP helpers are in
  ``_omp.pxd``. No kernel calls BLAS (the layers' big input-projection GEMMs are NumPy's).
* :mod:`fastseq_ext.reduce` -- the weight-gradient reductions after BPTT (on the same
  GEMM, reading ``h`` transposed), and ``step_matmul``, that GEMM exposed for tests.

The Python-facing adapter is :mod:`fastseq.backends.cython_cpu`.
"""

# No thread settings here. libgomp reads OMP_WAIT_POLICY once, when the first OpenMP
# library loads, and every OpenMP user in the process shares that copy (PyTorch's bundled
# libgomp has the same soname, so whichever loads first serves both). An earlier version
# set PASSIVE while this package loaded: that made a PyTorch LSTM in the same process
# 8-10x slower at 2 threads (3.8 ms -> 31-42 ms, B16 T200 H32 fwd+bwd) and our own small
# 2-thread calls 3x slower on an idle machine. On an oversubscribed machine, where
# spinning idle threads hold cores other threads need, set OMP_WAIT_POLICY=PASSIVE in
# the environment before starting Python (see docs/benchmarks.md).
