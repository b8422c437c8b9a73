"""fastseq_ext: ahead-of-time compiled (Cython) kernels behind ``backend="cython"``.

Modules (each built from the ``.pyx`` of the same name by ``setup.py``):

* :mod:`fastseq_ext.activations` -- vectorizable float32 ``tanh`` / ``sigmoid`` and a
  pointwise LSTM cell, exposed to Python for testing; the inline versions used by the
  kernels live in ``activations.pxd``.
* :mod:`fastseq_ext.rnn`, :mod:`fastseq_ext.lstm`, :mod:`fastseq_ext.gru` -- forward, BPTT
  and one-step (``step``, shape checks in ``_step.pxd``) per cell, float32 and float64;
  the per-step products run on the register-blocked GEMM of ``_smallgemm.h`` (no call,
  no packing; each row computed the same way whatever the batch), the gates of a row in
  one fused loop of ``_cells.h`` (activations in ``_act.h``). No kernel calls BLAS (the
  layers' input-projection GEMMs are NumPy's).
* :mod:`fastseq_ext.reduce` -- the weight-gradient reductions after BPTT (on the same
  GEMM, reading ``h`` transposed), ``step_matmul`` (that GEMM, optionally split in row or
  column blocks among threads; the layers' gradient GEMMs) and ``transpose_into``
  (``_transpose.h``).
* :mod:`fastseq_ext.team` -- the thread team every parallel kernel runs its tasks on
  (``_team.h``; one per process, shared through a C import).

The Python-facing adapter is :mod:`fastseq.backends.cython_cpu`.
"""

# No thread settings here, and no OpenMP: the kernels' threads are the team of _team.h.
# (An earlier version used OpenMP and set OMP_WAIT_POLICY=PASSIVE while it loaded; libgomp
# reads that once for the whole process, and PyTorch's bundled libgomp has the same
# soname, so a PyTorch LSTM in the same process ran 8-10x slower at 2 threads.)
