"""The peers on the same matrix, same threads: PyTorch CPU (oneDNN on and off) and
Keras 3 on TensorFlow (in a worker process). Absent peers are skipped with the reason."""
import pytest

from fastseq.benchmarking.suite import available_peers, peers_for

from .conftest import run_case, run_keras_case


def test_peer(benchmark, bench_case, bench_peer, n_threads, ceiling, request):
    case, peer = bench_case, bench_peer
    reason = available_peers()[peer]
    if reason:
        pytest.skip(reason)
    if peer not in peers_for(case, [peer]):
        pytest.skip("oneDNN only changes PyTorch's float32 LSTM: same as 'torch' here")
    if peer == "keras":
        run_keras_case(benchmark, case, request.getfixturevalue("keras_worker"),
                       n_threads, ceiling)
    else:
        run_case(benchmark, case, peer, n_threads, ceiling)
