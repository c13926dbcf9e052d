"""``strategy: knn``: k nearest training images by cosine similarity on frozen features.

A complete strategy plug-in: the class says what it freezes (everything: it is a
:class:`~facetransfer.strategies.FrozenFeatureStrategy`), which sections a method may hold
(the backbone options and its own ``knn:`` section, checked against scikit-learn's
``KNeighborsClassifier``) and how it turns frozen features into class scores. The entry point
in this package's ``pyproject.toml`` makes it a ``strategy:`` choice of every sweep::

    methods:
      - {strategy: knn, backbone: dlib_resnet, weights: FACE_API, knn: {n_neighbors: 3}}
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import normalize

from facetransfer.strategies import FrozenFeatureStrategy, Section
from facetransfer.strategies.frozen import BACKBONE


class KNearestNeighbours(FrozenFeatureStrategy):
    """k nearest training images by cosine similarity, distance-weighted votes."""

    name = "knn"
    summary = "k nearest training images by cosine similarity on frozen features (scikit-learn)"
    sections = (BACKBONE, Section("knn", "scikit-learn KNeighborsClassifier arguments", lambda: KNeighborsClassifier))
    defaults = {"knn": {"n_neighbors": 1, "weights": "distance"}}

    def solve(self, train, labels, test, num_classes, method, seed, ctx) -> np.ndarray:
        args = dict(method.options.get("knn", {}))
        args["n_neighbors"] = min(int(args.get("n_neighbors", 1)), len(train))
        knn = KNeighborsClassifier(**args).fit(normalize(train), labels)  # unit vectors: euclidean ranks as cosine
        scores = np.zeros((len(test), num_classes), dtype=np.float32)
        scores[:, knn.classes_] = knn.predict_proba(normalize(test))
        return scores
