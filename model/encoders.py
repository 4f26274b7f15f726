"""Classes the original project's pickled preprocessing refers to.

`/work/shared/seed/preprocess.joblib` was pickled with a transformer of class
`HashingEncoder` from a module named `encoders`: load it with
`model.export_preprocess.load_preprocess`, which resolves that name to this module.
"""

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction import FeatureHasher


class HashingEncoder(BaseEstimator, TransformerMixin):
    """Hashes each row's string values together into `n_features` columns."""

    def __init__(self, n_features=128):
        self.n_features = n_features
        self.hasher = FeatureHasher(n_features=n_features, input_type="string")

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return self.hasher.transform(X.astype(str).values)
