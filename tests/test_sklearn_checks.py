"""scikit-learn's own estimator checks, with no expected-failure list.

The instances are small (the checks fit a few hundred one-step sequences many times) and use
float64: scikit-learn compares refits, subsets and weighted-vs-repeated fits at rtol 1e-7,
which is below float32 resolution once BLAS blocks a GEMM differently for another batch
size. The float32 default is exercised by the determinism and estimator tests.
"""
import os

from sklearn.utils.estimator_checks import parametrize_with_checks

from fastseq.estimators import SequenceClassifier, SequenceRegressor, SequenceTagger

BACKEND = os.environ.get("FASTSEQ_SKLEARN_CHECK_BACKEND", "auto")
COMMON = dict(units=8, max_iter=60, learning_rate_init=0.02, dtype=os.environ.get("FASTSEQ_SKLEARN_CHECK_DTYPE", "float64"),
              backend=BACKEND)

ESTIMATORS = [
    SequenceClassifier(**COMMON),
    SequenceRegressor(**COMMON),
    SequenceTagger(**COMMON),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
