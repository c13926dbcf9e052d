"""``features_logreg``: the paper's feature extraction + scikit-learn logistic regression."""

from __future__ import annotations

import warnings

import numpy as np

from .base import CellContext, MethodSpec, Section, register_strategy
from .frozen import BACKBONE, FrozenFeatureStrategy
from .sections import imported

LOGREG = Section("logreg", "scikit-learn LogisticRegression arguments",
                 imported("sklearn.linear_model:LogisticRegression"))


def logistic_regression(args: dict, seed: int):
    """``StandardScaler`` + ``LogisticRegression(**args)`` (scaled features converge in few iterations); the
    method's ``logreg:`` keys were checked against its signature when the sweep config was read."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LOGREG.target()(**{"random_state": seed, **args}))


@register_strategy
class FeaturesLogReg(FrozenFeatureStrategy):
    """The paper's feature extraction + scikit-learn LogisticRegression (seconds, not epochs)."""

    name = "features_logreg"
    plot_style = ("-.", "^")
    sections = (BACKBONE, LOGREG)
    min_train_samples = 2

    def solve(self, train: np.ndarray, labels: np.ndarray, test: np.ndarray, num_classes: int, method: MethodSpec,
              seed: int, ctx: CellContext) -> np.ndarray:
        from sklearn.exceptions import ConvergenceWarning

        args = method.options.get("logreg", {})
        classifier = logistic_regression(args, seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            classifier.fit(train, labels)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            ctx.notices.append(
                f"{method.name}: LogisticRegression did not converge in max_iter={args.get('max_iter')} "
                "iterations (raise the method's logreg: max_iter)"
            )
        probs = np.zeros((len(test), num_classes), dtype=np.float32)
        probs[:, classifier.classes_] = classifier.predict_proba(test)  # absent identities: probability 0
        return probs
