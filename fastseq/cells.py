"""Cell specifications: which recurrent cell, its gate layout and its equations.

Every backend receives a :class:`CellSpec` and implements exactly these equations.
Notation (time-major, one step, batch of ``B`` rows)::

    xw_t  = x_t @ W + b_ih          # [B, G*H]  computed once for all t by the layer
    hw_t  = h_{t-1} @ R + b_hh      # [B, G*H]  the only sequential product

``W`` is ``weight_ih.T`` ``[I, G*H]`` and ``R`` is ``weight_hh.T`` ``[H, G*H]``, so the gate
blocks along the last axis follow PyTorch's row order.

simple RNN (``kind="rnn"``, G=1)::

    h_t = act(xw_t + hw_t)                                  act = tanh | relu

LSTM (``kind="lstm"``, G=4, gates ``[i | f | g | o]``)::

    i, f, g, o = split(xw_t + hw_t)
    i, f, o = sigmoid(i), sigmoid(f), sigmoid(o);  g = act(g)
    c_t = f * c_{t-1} + i * g
    h_t = o * act(c_t)

GRU, PyTorch / cuDNN "linear before reset" form (``kind="gru"``, ``reset_after=True``,
G=3, gates ``[r | z | n]``)::

    r = sigmoid(xw_r + hw_r);  z = sigmoid(xw_z + hw_z)
    n = act(xw_n + r * hw_n)                     # b_hn sits inside the reset product
    h_t = (1 - z) * n + z * h_{t-1}

GRU, classic / Keras ``reset_after=False`` form (``kind="gru"``, ``reset_after=False``)::

    r, z as above (from the first 2H columns of R)
    n = act(xw_n + (r * h_{t-1}) @ R_n + b_hn)   # R_n = R[:, 2H:]
    h_t = (1 - z) * n + z * h_{t-1}

Recurrent dropout (optional mask ``m`` of shape ``[B, H]``, fixed over time) multiplies
``h_{t-1}`` wherever it enters a product with ``R``; the GRU's ``z * h_{t-1}`` term and
the LSTM's cell path are not masked.
"""
from __future__ import annotations

from dataclasses import dataclass

CELL_KINDS = ("rnn", "lstm", "gru")
ACTIVATIONS = ("tanh", "relu")

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_GATE_NAMES = {"rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}


@dataclass(frozen=True)
class CellSpec:
    """What a recurrent cell computes; hashable, so kernels can be cached per spec.

    Parameters
    ----------
    kind : {"rnn", "lstm", "gru"}
    activation : {"tanh", "relu"}
        The cell activation: the RNN's nonlinearity, the LSTM's candidate and cell-output
        activation, the GRU's candidate activation. Gates always use the sigmoid.
    reset_after : bool
        GRU only: ``True`` is PyTorch's form, ``False`` Keras' classic form.
    """

    kind: str
    activation: str = "tanh"
    reset_after: bool = True

    def __post_init__(self):
        if self.kind not in CELL_KINDS:
            raise ValueError(f"cell kind must be one of {CELL_KINDS}, got {self.kind!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if not isinstance(self.reset_after, bool):
            raise TypeError(f"reset_after must be a bool, got {self.reset_after!r}")
        if self.kind != "gru" and not self.reset_after:
            raise ValueError("reset_after=False only applies to kind='gru'")

    @property
    def n_gates(self) -> int:
        """G: gate blocks per step (1, 4 or 3)."""
        return _GATES[self.kind]

    @property
    def gate_names(self) -> tuple:
        return _GATE_NAMES[self.kind]

    @property
    def has_cell_state(self) -> bool:
        """True for the LSTM, whose state is ``(h, c)``."""
        return self.kind == "lstm"

    @property
    def name(self) -> str:
        """A short stable name, e.g. ``"lstm"``, ``"rnn_relu"``, ``"gru_classic"``."""
        base = self.kind
        if self.kind == "gru" and not self.reset_after:
            base = "gru_classic"
        if self.activation != "tanh":
            base += "_" + self.activation
        return base


def make_cell(cell, activation: str = "tanh", reset_after: bool = True) -> CellSpec:
    """Build a :class:`CellSpec` from a spec or a name.

    Accepts a ``CellSpec`` (returned as is), a kind (``"lstm"``), or the short names
    produced by :attr:`CellSpec.name` (``"rnn_relu"``, ``"gru_classic"``, ``"lstm_relu"``)
    and the PyTorch spellings ``"rnn_tanh"`` / ``"RNN_TANH"``.
    """
    if isinstance(cell, CellSpec):
        return cell
    if not isinstance(cell, str):
        raise TypeError(f"cell must be a str or CellSpec, got {type(cell).__name__}")
    name = cell.lower()
    parts = name.split("_")
    kind = parts[0]
    for part in parts[1:]:
        if part in ACTIVATIONS:
            activation = part
        elif part == "classic" and kind == "gru":
            reset_after = False
        else:
            raise ValueError(f"unknown cell name {cell!r}; expected e.g. 'lstm', "
                             "'gru', 'gru_classic', 'rnn_tanh', 'rnn_relu'")
    return CellSpec(kind, activation, reset_after)
