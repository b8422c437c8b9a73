"""scikit-learn estimators: SequenceClassifier, SequenceRegressor, SequenceTagger,
TextGenerator."""
from .classifier import SequenceClassifier
from .generator import TextGenerator
from .regressor import SequenceRegressor
from .tagger import SequenceTagger

__all__ = ["SequenceClassifier", "SequenceRegressor", "SequenceTagger", "TextGenerator"]
