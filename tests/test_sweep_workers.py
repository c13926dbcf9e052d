"""A sweep's results folder shared by several processes: concurrent rows, a shared feature cache."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

from facetransfer.sweep import ResultsTable
from facetransfer.sweep.results import FIELDS

from .test_sweep import TINY_BACKBONE


# --- the folder's files under concurrent writers ------------------------------------------------------
def _append_rows(folder: str, worker: int, count: int) -> None:
    table = ResultsTable(Path(folder) / "results.csv")
    for i in range(count):
        row = {f: 0 for f in FIELDS} | {"method": f"m{worker}", "train_samples": i + 1, "seed": 0, "device": "cpu"}
        table.append(row)


def test_rows_appended_by_several_processes_at_once_are_all_kept(tmp_path):
    context = multiprocessing.get_context("fork")  # plain file work: no need for a fresh interpreter
    processes = [context.Process(target=_append_rows, args=(str(tmp_path), w, 15)) for w in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
        assert p.exitcode == 0
    rows = ResultsTable(tmp_path / "results.csv").rows()
    assert len(rows) == 60 and len({(r["method"], r["train_samples"]) for r in rows}) == 60
    assert not list(tmp_path.glob(".results.csv.*.tmp"))


def test_feature_store_computes_a_key_once_for_concurrent_workers(tmp_path):
    import facetransfer as ft
    from facetransfer.features import BackboneFeatures
    from facetransfer.sweep.feature_store import FeatureStore, all_keys

    data = ft.FaceDataModule("synthetic", dataset_args={"num_identities": 6, "images_per_identity": 8, "image_size": 40},
                             num_workers=0)
    keys = all_keys([data.manifest])
    model = ft.FaceClassifier(backbone="scratch_cnn", backbone_args=TINY_BACKBONE, freeze="all")
    extractor = BackboneFeatures(model.backbone, identity=model.feature_identity())
    stores = [FeatureStore(tmp_path / "features", data.source, keys, face_crop=data.face_crop) for _ in range(2)]
    start, results = threading.Barrier(2), {}

    def work(i: int) -> None:
        start.wait()
        results[i] = stores[i].all_features(extractor)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(s.computed for s in stores) == 1 and sum(s.loaded for s in stores) == 1
    assert results[0].shape == (len(keys), 32) and bool((results[0] == results[1]).all())
    assert len(list((tmp_path / "features").glob("*.pt"))) == 1
