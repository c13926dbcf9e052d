"""Seeded per-identity stratified splits, nested subsets, manifests."""

from __future__ import annotations

from collections import Counter

import pytest

from facetransfer.data.sources import FaceRecord
from facetransfer.data.split import SplitManifest, make_split
from facetransfer.errors import ConfigError, DataError


def records(counts: dict[str, int]) -> list[FaceRecord]:
    return [FaceRecord(name, f"{name}/{i:03d}.jpg") for name, n in counts.items() for i in range(n)]


RECS = records({f"id{i:02d}": 5 + i % 7 for i in range(20)})


def test_every_identity_in_every_part_and_no_overlap():
    m = make_split(RECS, val_fraction=0.1, test_fraction=0.2, seed=3)
    assert m.num_classes == 20
    for part in (m.train, m.val, m.test):
        assert set(label for _, label in part) == set(range(20))
    keys = [k for part in (m.train, m.val, m.test) for k, _ in part]
    assert len(keys) == len(set(keys)) == len(RECS)
    # labels point at the right identity
    assert all(k.split("/")[0] == m.classes[label] for part in (m.train, m.val, m.test) for k, label in part)


def test_nested_subsets_and_test_set_independent_of_n():
    sizes = [20, 50, 100, "all"]
    splits = {n: make_split(RECS, train_samples=n, seed=1) for n in sizes}
    for small, big in zip(sizes, sizes[1:]):
        assert set(splits[small].train) <= set(splits[big].train)
        assert splits[small].train == splits[big].train[: len(splits[small].train)]
        assert splits[small].test == splits[big].test and splits[small].val == splits[big].val


def test_round_robin_is_stratified():
    m = make_split(RECS, train_samples=40, seed=0)
    per_identity = Counter(label for _, label in m.train)
    assert set(per_identity.values()) == {2}  # 40 images over 20 identities: exactly 2 each


def test_seed_changes_split_and_same_seed_reproduces():
    a, b, c = make_split(RECS, seed=0), make_split(RECS, seed=0), make_split(RECS, seed=1)
    assert a.to_dict() == b.to_dict()
    assert a.test != c.test


def test_filters_min_images_and_max_identities():
    recs = records({"a": 2, "b": 9, "c": 9, "d": 12, "e": 3})
    m = make_split(recs, min_images_per_identity=3)
    assert m.classes == ["b", "c", "d", "e"]
    m = make_split(recs, min_images_per_identity=3, max_identities=2)
    assert m.classes == ["b", "d"]  # most images first, ties by name


@pytest.mark.parametrize("n", [0, -5, 10_000, "many", 2.5])
def test_bad_train_samples(n):
    with pytest.raises(ConfigError, match="train_samples"):
        make_split(RECS, train_samples=n)


def test_train_samples_larger_than_pool_names_pool_size():
    with pytest.raises(ConfigError, match=r"larger than the training pool \(\d+ images"):
        make_split(RECS, train_samples=len(RECS))


def test_identity_with_too_few_images_for_the_split():
    with pytest.raises(DataError, match=r"identity 'tiny' has 2 images but the split needs at least 3"):
        make_split(records({"tiny": 2, "big": 10}), min_images_per_identity=2)


def test_no_identity_passes_filter():
    with pytest.raises(DataError, match=r"no identity has >= 50 images .* the largest has 11"):
        make_split(RECS, min_images_per_identity=50)


def test_bad_fractions():
    with pytest.raises(ConfigError, match="val_fraction"):
        make_split(RECS, val_fraction=0.5, test_fraction=0.6)


def test_manifest_roundtrip(tmp_path):
    m = make_split(RECS, train_samples=30, seed=2)
    path = m.save(tmp_path / "run" / "split.json")
    again = SplitManifest.load(path)
    assert again.to_dict() == m.to_dict()
    assert not list(path.parent.glob("*.tmp"))


def test_manifest_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        SplitManifest.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        SplitManifest.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"version": 1, "foo": 2}')
    with pytest.raises(DataError, match="not a facetransfer split manifest"):
        SplitManifest.load(tmp_path / "other.json")
