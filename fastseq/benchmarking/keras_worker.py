"""Keras 3 on TensorFlow, measured in a worker process.

TensorFlow and PyTorch in one process fight over threads and OpenMP runtimes, and
TensorFlow's thread pools can only be sized before it starts; so Keras runs here, in a
child started with ``KERAS_BACKEND=tensorflow``, and answers one JSON line per request
on stdout::

    {"op": "measure", "case": {...}, "policy": {...}}  -> {"timing": {...}} | {"skip": why}
    {"op": "prepare", "case": {...}}                   -> {"ok": key} | {"skip": why}
    {"op": "call", "key": key}                         -> {"ok": key}   (one call, for pytest)
    {"op": "endtoend"}                        -> {"fit": {...}, "predict": {...}} (seed model)
    {"op": "ping"}                                     -> {"ok": versions}

The parent side is :class:`KerasWorker`. The timing inside the worker uses the same
:func:`fastseq.benchmarking.timing.measure` as everything else.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .cases import Case


def _build(case, n_threads):
    import numpy as np
    import tensorflow as tf
    import keras

    layers = {
        "rnn": lambda: keras.layers.SimpleRNN(case.H, return_sequences=True,
                                              return_state=True, dtype=case.dtype),
        "lstm": lambda: keras.layers.LSTM(case.H, return_sequences=True,
                                          return_state=True, dtype=case.dtype),
        "gru": lambda: keras.layers.GRU(case.H, return_sequences=True, return_state=True,
                                        reset_after=True, dtype=case.dtype),
        "gru_classic": lambda: keras.layers.GRU(case.H, return_sequences=True,
                                                return_state=True, reset_after=False,
                                                dtype=case.dtype),
    }
    layer = layers[case.cell]()
    rng = np.random.default_rng(0)
    T = 1 if case.mode == "step" else case.T
    # Keras is batch-major: [B, T, I]
    x = tf.constant(rng.standard_normal((case.B, T, case.I)).astype(case.dtype))
    dout = tf.constant(rng.standard_normal((case.B, T, case.H)).astype(case.dtype))
    layer(x)   # build the weights
    if case.mode == "fwd":
        @tf.function
        def fwd(x):
            return layer(x, training=False)[0]

        return lambda: fwd(x).numpy()
    if case.mode == "train":
        @tf.function
        def train(x, dout):
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = layer(x, training=True)[0]
                loss = tf.reduce_sum(out * dout)
            return tape.gradient(loss, [x] + layer.trainable_variables)

        return lambda: [g.numpy() for g in train(x, dout)]
    n_states = 2 if case.cell == "lstm" else 1
    states = [tf.zeros((case.B, case.H), dtype=case.dtype) for _ in range(n_states)]

    @tf.function
    def step(x, states):
        return layer(x, initial_state=states, training=False)[1:]

    return lambda: [s.numpy() for s in step(x, states)]


def _serve(n_threads):
    """The worker's loop: read requests on stdin, answer on stdout."""
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(n_threads)
    tf.config.threading.set_inter_op_parallelism_threads(n_threads)
    import keras

    from .timing import measure
    out = sys.stdout
    sys.stdout = sys.stderr       # nothing else may write on the answer channel
    runners = {}
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        try:
            if op == "ping":
                answer = {"ok": {"keras": keras.__version__, "tensorflow": tf.__version__,
                                 "backend": keras.backend.backend()}}
            elif op in ("measure", "prepare"):
                case = Case(**request["case"])
                fn = _build(case, n_threads)
                if op == "measure":
                    answer = {"timing": measure(fn, **request.get("policy", {})).to_dict()}
                else:
                    runners[case.id] = fn
                    fn()
                    answer = {"ok": case.id}
            elif op == "endtoend":
                from .endtoend import POLICY, keras_runners
                fit, predict = keras_runners()
                answer = {"fit": measure(fit, **POLICY).to_dict(),
                          "predict": measure(predict, **POLICY).to_dict()}
            elif op == "call":
                runners[request["key"]]()
                answer = {"ok": request["key"]}
            else:
                answer = {"error": f"unknown op {op!r}"}
        except Exception as exc:  # reported to the parent, which skips the case
            answer = {"skip": f"Keras failed: {type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


class KerasWorker:
    """Parent side: start the worker lazily, send requests, close on exit.

    ``available`` is False (and ``reason`` says why) when TensorFlow or Keras is absent.
    """

    def __init__(self, n_threads):
        self.n_threads = n_threads
        self.proc = None
        self.reason = None
        self.versions = None

    def _start(self):
        if self.proc is not None or self.reason is not None:
            return
        import importlib.util
        for module in ("tensorflow", "keras"):
            if importlib.util.find_spec(module) is None:
                self.reason = (f"{module} is not installed: Keras peer skipped "
                               "(pip install tensorflow-cpu keras)")
                return
        env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
                   OMP_NUM_THREADS=str(self.n_threads), CUDA_VISIBLE_DEVICES="")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastseq.benchmarking.keras_worker",
             str(self.n_threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env)
        answer = self._ask({"op": "ping"})
        if "ok" not in answer:
            self.reason = answer.get("skip") or answer.get("error") or "worker failed"
            self.close()
        else:
            self.versions = answer["ok"]

    @property
    def available(self):
        self._start()
        return self.proc is not None

    def _ask(self, request):
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError) as exc:
            return {"skip": f"Keras worker died: {exc}"}
        if not line:
            return {"skip": "Keras worker exited (TensorFlow failed to start?)"}
        return json.loads(line)

    def measure(self, case, **policy):
        """``Timing`` fields as a dict, or ``{"skip": reason}``."""
        if not self.available:
            return {"skip": self.reason}
        answer = self._ask({"op": "measure", "case": case.to_dict(), "policy": policy})
        return answer.get("timing") and answer["timing"] or answer

    def prepare(self, case):
        if not self.available:
            return {"skip": self.reason}
        return self._ask({"op": "prepare", "case": case.to_dict()})

    def endtoend(self):
        """Timings of the seed model's fit and predict (see :mod:`.endtoend`)."""
        if not self.available:
            return {"skip": self.reason}
        return self._ask({"op": "endtoend"})

    def call(self, key):
        return self._ask({"op": "call", "key": key})

    def close(self):
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
            self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    _serve(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
