"""Seeded per-identity stratified splits, nested subsets, manifests."""

from __future__ import annotations

import hashlib
import json
import re
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


# --- identity splits (open set) ---------------------------------------------------------------------------------
SKEWED = records({f"p{i:02d}": max(3, 60 // (i + 1)) for i in range(40)})  # 60, 30, 20, ... images, then 3s


def people(m: SplitManifest) -> dict[str, set[str]]:
    return {part: set(m.identities(part)) for part in ("train", "val", "test")}


def write_pairs(path, same: list[str], different: list[tuple[str, str]]):
    """A View 1 pairs file: N same-person lines, then N different-person lines."""
    assert len(same) == len(different)
    lines = [str(len(same))] + [f"{a}\t1\t2" for a in same] + [f"{a}\t1\t{b}\t1" for a, b in different]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_identity_split_puts_each_person_in_one_part_with_all_images():
    m = make_split(SKEWED, split_by="identity", val_fraction=0.1, test_fraction=0.2, seed=4)
    parts = people(m)
    assert m.open_set and not make_split(SKEWED).open_set
    assert [len(parts[p]) for p in ("train", "val", "test")] == [28, 4, 8]  # shares of 40 people
    assert not parts["train"] & parts["val"] and not parts["train"] & parts["test"] and not parts["val"] & parts["test"]
    assert m.classes == sorted(parts["train"]) and m.eval_classes == sorted(parts["val"] | parts["test"])
    keys = [k for part in (m.train, m.val, m.test) for k, _ in part]
    assert len(keys) == len(set(keys)) == len(SKEWED) == m.train_pool_size + len(m.val) + len(m.test)
    for part in ("train", "val", "test"):  # labels name the right person: classes for train, eval_classes else
        names = m.label_names(part)
        assert all(k.split("/")[0] == names[label] for k, label in getattr(m, part))


def test_identity_split_deals_big_and_small_identities_to_every_part():
    counts = Counter(r.identity for r in SKEWED)
    big = {name for name, _ in counts.most_common(20)}
    for seed in range(5):
        parts = people(make_split(SKEWED, split_by="identity", val_fraction=0.1, test_fraction=0.2, seed=seed))
        # half of each part's people are among the 20 largest (a cut by image count would put them all in one part)
        assert len(parts["train"] & big) == 14 and len(parts["test"] & big) == 4 and len(parts["val"] & big) == 2


def test_identity_split_is_seeded_and_independent_of_train_samples():
    a, b = make_split(SKEWED, split_by="identity", seed=0), make_split(SKEWED, split_by="identity", seed=0)
    assert a.to_dict() == b.to_dict()
    assert people(make_split(SKEWED, split_by="identity", seed=1))["test"] != people(a)["test"]
    small = make_split(SKEWED, split_by="identity", seed=0, train_samples=30)
    assert small.val == a.val and small.test == a.test and small.train == a.train[:30]
    assert set(Counter(label for _, label in small.train).values()) == {1, 2}  # round-robin over 28 people


def test_train_identities_are_nested_relabelled_and_made_from_one_split():
    whole = make_split(SKEWED, split_by="identity", seed=2)
    chosen = {}
    for k in (5, 10, 28):
        m = make_split(SKEWED, split_by="identity", seed=2, train_identities=k)
        sub = whole.subset_identities(k)
        assert (m.classes, m.train, m.train_pool_size) == (sub.classes, sub.train, sub.train_pool_size)
        assert m.num_classes == k and sorted({label for _, label in m.train}) == list(range(k))
        assert all(k_.split("/")[0] == m.classes[label] for k_, label in m.train)
        assert m.val == whole.val and m.test == whole.test and m.eval_classes == whole.eval_classes
        assert m.train_pool_size == len(m.train) == sum(1 for k_, _ in whole.train if k_.split("/")[0] in m.classes)
        chosen[k] = set(m.classes)
    assert chosen[5] < chosen[10] < chosen[28] == set(whole.classes)
    assert make_split(SKEWED, split_by="identity", seed=2, train_identities=10, train_samples=15).train == \
        whole.subset_identities(10).subset(15).train
    assert whole.subset_identities(10).settings["train_identities"] == 10


def test_train_identities_errors():
    with pytest.raises(ConfigError, match="train_identities=5 needs split_by: identity"):
        make_split(SKEWED, train_identities=5)
    with pytest.raises(ConfigError, match=r"train_identities=29 is larger than the 28 training people"):
        make_split(SKEWED, split_by="identity", train_identities=29)
    with pytest.raises(ConfigError, match="needs the whole training pool"):
        make_split(SKEWED, split_by="identity", train_samples=10).subset_identities(3)
    with pytest.raises(ConfigError, match="needs an identity split"):
        make_split(SKEWED).subset_identities(3)
    with pytest.raises(ConfigError, match="split_by must be"):
        make_split(SKEWED, split_by="person")


def test_train_min_images_adds_people_to_training_only_and_keeps_val_and_test(tmp_path):
    recs = SKEWED + records({f"once{i}": 1 for i in range(6)}) + records({"twice": 2})
    base = make_split(recs, split_by="identity", min_images_per_identity=3, seed=3)
    more = make_split(recs, split_by="identity", min_images_per_identity=3, train_min_images_per_identity=1, seed=3)
    assert (more.val, more.test, more.eval_classes) == (base.val, base.test, base.eval_classes)
    assert set(more.classes) == set(base.classes) | {f"once{i}" for i in range(6)} | {"twice"}
    assert more.train_pool_size == base.train_pool_size + 8
    assert all(k.split("/")[0] == more.classes[label] for k, label in more.train)
    two = make_split(recs, split_by="identity", min_images_per_identity=3, train_min_images_per_identity=2, seed=3)
    assert set(two.classes) - set(base.classes) == {"twice"}
    assert more.settings["train_min_images_per_identity"] == 1
    assert len(more.subset_identities(10).classes) == 10  # the extra people are in the seeded order of all
    excluded = write_pairs(tmp_path / "pairs.txt", ["once0"], [("once1", "twice")])
    left = make_split(recs, split_by="identity", min_images_per_identity=3, train_min_images_per_identity=1, seed=3,
                      exclude_identities_in=str(excluded))
    assert not {"once0", "once1", "twice"} & set(left.classes)


def test_train_min_images_errors():
    with pytest.raises(ConfigError, match="train_min_images_per_identity=1 needs split_by: identity"):
        make_split(SKEWED, train_min_images_per_identity=1)
    with pytest.raises(ConfigError, match=r"must be in 1..2 \(below min_images_per_identity=3\), got 3"):
        make_split(SKEWED, split_by="identity", train_min_images_per_identity=3)


def test_identity_split_needs_enough_people():
    with pytest.raises(DataError, match=r"3 people pass the filters .* needs at least 4 \(1 train \+ 1 val \+ 2 test\)"):
        make_split(records({"a": 5, "b": 5, "c": 5}), split_by="identity", val_fraction=0.1, test_fraction=0.5)


def test_balanced_eval_gives_every_val_and_test_person_the_same_count():
    m = make_split(SKEWED, split_by="identity", balanced_eval=True, seed=0)
    for part in (m.val, m.test):
        assert set(Counter(label for _, label in part).values()) == {3}  # the smallest person has 3
    assert m.train == make_split(SKEWED, split_by="identity", seed=0).train


@pytest.mark.parametrize("split_by", ["image", "identity"])
def test_exclude_identities_in_leaves_the_pairs_people_out(tmp_path, split_by):
    pairs = write_pairs(tmp_path / "pairsDevTest.txt", ["p00", "p05"], [("p01", "p07"), ("p05", "Nobody_Here")])
    m = make_split(SKEWED, split_by=split_by, exclude_identities_in=str(pairs))
    everyone = set(m.classes) | set(m.eval_classes or [])
    assert len(everyone) == 36 and not everyone & {"p00", "p01", "p05", "p07"}
    assert all(k.split("/")[0] not in {"p00", "p01", "p05", "p07"} for part in (m.train, m.val, m.test) for k, _ in part)
    assert m.settings["exclude_identities_in"] == str(pairs) and m.settings["excluded_identities"] == 4
    assert m.settings["exclude_identities_sha256"] == hashlib.sha256(pairs.read_bytes()).hexdigest()
    assert m.exclusion_warning() is None


def test_exclude_identities_in_errors(tmp_path):
    recs = records({"a": 5, "b": 5})
    with pytest.raises(DataError, match=r"exclude_identities_in=.*names all 2 people of the dataset"):
        make_split(recs, exclude_identities_in=str(write_pairs(tmp_path / "p.txt", ["a"], [("a", "b")])))
    with pytest.raises(DataError, match="exclude_identities_in: pairs file .* does not exist"):
        make_split(recs, exclude_identities_in=str(tmp_path / "missing.txt"))


def test_a_changed_pairs_file_is_noticed(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.txt", ["p00"], [("p01", "p02")])
    m = make_split(SKEWED, split_by="identity", exclude_identities_in=str(pairs))
    write_pairs(pairs, ["p00"], [("p01", "p03")])  # p03 is in the split now
    assert re.search(r"pairs file .* changed since the split was made .* 1 people it names are in the split "
                     r"\(e.g. p03\)", m.exclusion_warning())


def test_version_1_manifests_without_the_new_fields_load_as_image_splits(tmp_path):
    old = {"classes": ["a", "b"], "train": [["a/1", 0], ["b/1", 1]], "val": [["a/2", 0]], "test": [["b/2", 1]],
           "train_pool_size": 2, "settings": {"seed": 0, "train_samples": "all"}, "source": {}, "skipped": [],
           "version": 1}
    (tmp_path / "split.json").write_text(json.dumps(old))
    m = SplitManifest.load(tmp_path / "split.json")
    assert not m.open_set and m.identities("test") == ["b"] and m.to_dict() == old


def test_manifest_labels_are_checked_against_their_own_names(tmp_path):
    m = make_split(SKEWED, split_by="identity", seed=0)
    again = SplitManifest.load(m.save(tmp_path / "split.json"))
    assert again.to_dict() == m.to_dict() and again.open_set
    data = m.to_dict()
    data["test"][0][1] = len(m.eval_classes)  # valid for classes (28 > 12 people), not for eval_classes
    assert len(m.eval_classes) < m.num_classes
    with pytest.raises(DataError, match="test labels outside 0..11"):
        SplitManifest.from_dict(data)


def test_datamodule_keeps_an_identity_split_through_split_json_and_checkpoints(tmp_path):
    import lightning as L

    from facetransfer.data.datamodule import MANIFEST_NAME, FaceDataModule

    args = {"dataset_args": {"num_identities": 10, "images_per_identity": 4, "image_size": 32}, "num_workers": 0,
            "split_by": "identity", "val_fraction": 0.2, "test_fraction": 0.2, "seed": 3}
    data = FaceDataModule("synthetic", train_identities=4, **args)
    assert data.open_set and data.num_classes == 4 and len(data.manifest.eval_classes) == 4
    data.trainer = L.Trainer(default_root_dir=tmp_path, logger=False, accelerator="cpu", enable_progress_bar=False)
    data.setup("fit")
    saved = SplitManifest.load(tmp_path / MANIFEST_NAME)
    assert saved.to_dict() == data.manifest.to_dict() and saved.settings["split_by"] == "identity"
    again = FaceDataModule("synthetic", **{**args, "seed": 0, "split_by": "image"})
    again.load_state_dict(data.state_dict())
    assert again.open_set and again.manifest.to_dict() == data.manifest.to_dict()
    assert again.class_names == data.class_names and len(again.val_dataloader().dataset) == len(data.manifest.val)
