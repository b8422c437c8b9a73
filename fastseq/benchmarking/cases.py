"""What is measured: benchmark cases, the matrix, and the FLOP and memory formulas.

A :class:`Case` is one cell at one size, one dtype and one mode:

* ``fwd``   -- inference over ``T`` steps (``stack_forward``, ``training=False``,
  ``need_grad=False``, as the estimators predict; PyTorch under ``no_grad``);
* ``train`` -- forward + backward over ``T`` steps (``stack_forward`` then
  ``stack_backward``), the work of one training step of one layer;
* ``step``  -- one streaming step for a batch (input projection + ``backend.step``).

FLOPs are the nominal count of the matrix products, the convention of DeepBench and of
DESIGN.md section 4 (pointwise work is not counted)::

    forward step   2 * B * (I + H) * G * H        G gates: rnn 1, lstm 4, gru 3
    forward        T * forward step
    training       3 * forward                    (backward = dR, dW and dh/dx products)
    one step       forward step

so GFLOP/s of different cells and sizes are on one scale and comparable with the GEMM
ceiling.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..cells import make_cell

# the four cells of the matrix; "gru_classic" is Keras' reset_after=False form
CELLS = ("rnn", "lstm", "gru", "gru_classic")
MODES = ("fwd", "train", "step")
DTYPES = ("float32", "float64")


def cell_spec(cell):
    """CellSpec of a matrix cell name (``make_cell`` knows ``"gru_classic"``)."""
    return make_cell(cell)


def n_gates(cell):
    return {"rnn": 1, "lstm": 4, "gru": 3, "gru_classic": 3}[cell]


@dataclass(frozen=True)
class Case:
    """One benchmark cell: ``cell`` at batch ``B``, ``T`` steps, ``I`` inputs, ``H`` units."""

    cell: str
    B: int
    T: int
    I: int
    H: int
    mode: str = "train"
    dtype: str = "float32"
    tag: str = ""            # which group of the matrix it belongs to (for tables/plots)

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        for name in ("B", "T", "I", "H"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def label(self):
        """Short human id, e.g. ``lstm B16 T200 I8 H32 train f32``."""
        steps = "" if self.mode == "step" else f" T{self.T}"
        return (f"{self.cell} B{self.B}{steps} I{self.I} H{self.H} {self.mode} "
                f"{'f32' if self.dtype == 'float32' else 'f64'}")

    @property
    def id(self):
        """Identifier usable as a pytest id or a file name."""
        return self.label.replace(" ", "-")

    @property
    def flops(self):
        return flops(self)

    def to_dict(self):
        return asdict(self)


def flops(case):
    """Nominal FLOPs of one call (see the module docstring)."""
    step = 2 * case.B * (case.I + case.H) * n_gates(case.cell) * case.H
    if case.mode == "step":
        return step
    forward = case.T * step
    return 3 * forward if case.mode == "train" else forward


def min_train_bytes(case):
    """The least memory a training step of one layer can live in, from shapes alone.

    parameters + their gradients (same size) + the input ``x [T, B, I]`` + the output
    gradient handed in ``dout [T, B, H]`` + the activations BPTT has to read back:
    ``h`` for every step ``[T, B, H]`` (the output), the post-activation gates
    ``[T, B, G*H]`` (for the simple RNN they are ``h`` itself), the LSTM cell state
    ``c [T, B, H]``, and for the PyTorch-form GRU the recurrent candidate product
    ``hw_n [T, B, H]`` (the reset gate's derivative needs it).
    """
    B, T, I, H = case.B, case.T, case.I, case.H
    itemsize = 4 if case.dtype == "float32" else 8
    elements = (2 * n_params(case.cell, I, H) + T * B * I + T * B * H
                + T * B * saved_per_step(case.cell, H))
    return itemsize * elements


def n_params(cell, I, H):
    """weight_ih + weight_hh + bias_ih + bias_hh of one layer."""
    G = n_gates(cell)
    return G * H * (I + H) + 2 * G * H


def saved_per_step(cell, H):
    """Values per batch row and step that BPTT must keep (see :func:`min_train_bytes`)."""
    per_step = H + (0 if cell == "rnn" else n_gates(cell) * H)   # h, gates
    if cell in ("lstm", "gru"):
        per_step += H                                            # c  |  hw_n
    return per_step


# ------------------------------------------------------------------ the matrix
# issue 4's targets (engine acceptance sizes)
ISSUE4 = (
    ("lstm", 16, 200, 8, 32),
    ("gru", 16, 200, 8, 32),
    ("lstm", 32, 100, 32, 64),
    ("lstm", 128, 28, 28, 128),
    ("gru", 64, 100, 128, 256),
)
ISSUE4_BIG = (("lstm", 64, 50, 512, 512),)   # the large one: near the GEMM ceiling
# DeepBench-style training sizes: input = hidden
DEEPBENCH = tuple(("lstm", B, T, H, H) for H in (256, 512, 1024) for B in (16, 64)
                  for T in (25, 50))


def hidden_sweep(hidden_sizes, B=32, T=50, mode="train", dtype="float32"):
    """Throughput against hidden size, every cell, input = hidden (the plots' data)."""
    return [Case(cell, B, T, H, H, mode, dtype, tag="sweep")
            for cell in CELLS for H in hidden_sizes]


def step_cases(batches, hidden_sizes, dtype="float32"):
    return [Case(cell, B, 1, H, H, "step", dtype, tag="step")
            for cell in CELLS for B in batches for H in hidden_sizes]


def quick_cases():
    """The fixed subset of ``python -m fastseq bench --report`` (under 3 minutes)."""
    cases = []
    for cell, B, T, I, H in ISSUE4:
        for mode in ("fwd", "train"):
            cases.append(Case(cell, B, T, I, H, mode, "float32", tag="issue4"))
    for cell, B, T, I, H in ISSUE4_BIG:
        for mode in ("fwd", "train"):
            cases.append(Case(cell, B, T, I, H, mode, "float32", tag="issue4"))
    cases.append(Case("lstm", 32, 100, 32, 64, "train", "float64", tag="issue4"))
    cases += hidden_sweep((32, 128, 256))
    cases += step_cases((1,), (64,))
    return _unique(cases)


def full_cases():
    """The whole matrix (``--full``): every cell, mode and dtype, DeepBench sizes."""
    cases = []
    for dtype in DTYPES:
        for cell, B, T, I, H in ISSUE4:
            for mode in ("fwd", "train"):
                cases.append(Case(cell, B, T, I, H, mode, dtype, tag="issue4"))
        for cell, B, T, I, H in ISSUE4_BIG:
            for mode in ("fwd", "train"):
                cases.append(Case(cell, B, T, I, H, mode, dtype, tag="issue4"))
        for cell, B, T, I, H in DEEPBENCH:
            for mode in ("fwd", "train"):
                cases.append(Case(cell, B, T, I, H, mode, dtype, tag="deepbench"))
        for mode in ("fwd", "train"):
            cases += hidden_sweep((32, 64, 128, 256, 512), mode=mode, dtype=dtype)
        cases += step_cases((1, 16), (64, 256), dtype=dtype)
    return _unique(cases)


def memory_cases(full=False):
    """Training steps whose peak memory is measured (each in a fresh process)."""
    cases = [Case("lstm", 32, 100, 32, 64, "train", tag="memory"),
             Case("gru", 64, 100, 128, 256, "train", tag="memory")]
    if full:
        cases += [Case(cell, 32, 50, 256, 256, "train", tag="memory") for cell in CELLS]
        cases += [Case("lstm", 64, 50, 512, 512, "train", tag="memory"),
                  Case("lstm", 32, 100, 32, 64, "train", "float64", tag="memory")]
    return _unique(cases)


def scaling_cases(full=False):
    """Cases measured at 1 thread and at N threads (issue 4: >= 1.7x at H >= 128)."""
    cases = [Case("lstm", 128, 28, 28, 128, "train", tag="scaling"),
             Case("gru", 64, 100, 128, 256, "train", tag="scaling")]
    if full:
        cases += [Case(cell, 32, 50, H, H, "train", tag="scaling")
                  for cell in CELLS for H in (128, 512)]
    return _unique(cases)


def tiny_cases():
    """A handful of tiny cases for the smoke test of the machinery."""
    return [Case("lstm", 2, 3, 3, 4, "fwd", tag="issue4"),
            Case("lstm", 2, 3, 5, 5, "train", tag="sweep"),
            Case("gru", 2, 3, 5, 5, "train", tag="sweep"),
            Case("gru", 2, 3, 8, 8, "train", tag="sweep"),
            Case("gru_classic", 2, 3, 4, 4, "train", tag="sweep"),
            Case("rnn", 1, 1, 4, 4, "step", "float64", tag="step")]


def _unique(cases):
    seen, out = set(), []
    for case in cases:
        key = (case.cell, case.B, case.T, case.I, case.H, case.mode, case.dtype)
        if key not in seen:
            seen.add(key)
            out.append(case)
    return out
