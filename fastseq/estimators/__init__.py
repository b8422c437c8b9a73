"""scikit-learn estimators: SequenceClassifier, SequenceRegressor, SequenceTagger."""
from .classifier import SequenceClassifier
from .regressor import SequenceRegressor
from .tagger import SequenceTagger

__all__ = ["SequenceClassifier", "SequenceRegressor", "SequenceTagger"]
