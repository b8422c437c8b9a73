"""fastseq.cells: cell specs, their names and their errors."""
import pickle

import pytest

from fastseq.cells import ACTIVATIONS, CELL_KINDS, CellSpec, make_cell

ALL_SPECS = [CellSpec(kind, act, reset_after)
             for kind in CELL_KINDS for act in ACTIVATIONS
             for reset_after in ((True, False) if kind == "gru" else (True,))]


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
def test_name_round_trips(spec):
    assert make_cell(spec.name) == spec
    assert make_cell(spec.name.upper()) == spec
    assert make_cell(spec) is spec


def test_names_are_distinct_and_stable():
    names = [s.name for s in ALL_SPECS]
    assert len(set(names)) == len(names)
    assert {"rnn", "rnn_relu", "lstm", "lstm_relu", "gru", "gru_relu", "gru_classic",
            "gru_classic_relu"} == set(names)


@pytest.mark.parametrize("name, expected", [
    ("rnn_tanh", CellSpec("rnn", "tanh")),          # PyTorch's mode names
    ("RNN_TANH", CellSpec("rnn", "tanh")),
    ("RNN_RELU", CellSpec("rnn", "relu")),
    ("LSTM", CellSpec("lstm")),
    ("GRU", CellSpec("gru")),
    ("gru_relu_classic", CellSpec("gru", "relu", reset_after=False)),
])
def test_spellings(name, expected):
    assert make_cell(name) == expected


def test_keyword_defaults_apply_to_bare_kinds():
    assert make_cell("gru", reset_after=False) == CellSpec("gru", reset_after=False)
    assert make_cell("lstm", activation="relu") == CellSpec("lstm", "relu")
    # a suffix in the name wins over the keyword
    assert make_cell("rnn_relu", activation="tanh").activation == "relu"


@pytest.mark.parametrize("kind, gates, names, has_c", [
    ("rnn", 1, ("h",), False),
    ("lstm", 4, ("i", "f", "g", "o"), True),        # PyTorch's row order
    ("gru", 3, ("r", "z", "n"), False),
])
def test_gate_layout(kind, gates, names, has_c):
    spec = CellSpec(kind)
    assert spec.n_gates == gates
    assert spec.gate_names == names
    assert spec.has_cell_state is has_c


def test_specs_are_hashable_frozen_and_picklable():
    assert len({CellSpec("lstm"), CellSpec("lstm"), make_cell("lstm")}) == 1
    with pytest.raises(Exception):
        CellSpec("lstm").kind = "gru"
    for spec in ALL_SPECS:
        assert pickle.loads(pickle.dumps(spec)) == spec


@pytest.mark.parametrize("args, error, words", [
    (("conv",), ValueError, "cell kind"),
    (("lstm", "sigmoid"), ValueError, "activation"),
    (("gru", "tanh", 0), TypeError, "reset_after"),
    (("lstm", "tanh", False), ValueError, "reset_after"),
    (("rnn", "tanh", False), ValueError, "reset_after"),
])
def test_cellspec_errors(args, error, words):
    with pytest.raises(error, match=words):
        CellSpec(*args)


@pytest.mark.parametrize("bad", ["lstm_classic", "gru_bogus", "rnn_sigmoid", "transformer",
                                 "lstm_"])
def test_make_cell_rejects_unknown_names(bad):
    with pytest.raises(ValueError, match=repr(bad).replace("[", r"\[")):
        make_cell(bad)


@pytest.mark.parametrize("bad", [None, 3, ("lstm",), CellSpec])
def test_make_cell_rejects_non_strings(bad):
    with pytest.raises(TypeError, match="cell must be a str or CellSpec"):
        make_cell(bad)
