"""`facetransfer pairs make` and make_pairs: balanced, seeded, person-disjoint pairs files that `verify` reads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from facetransfer.cli import main
from facetransfer.data.pairs import PairsProtocol, make_pairs, read_pairs, write_pairs
from facetransfer.data.split import SplitManifest
from facetransfer.errors import ConfigError, DataError

from .fakes import REPO, make_folder_tree, make_lfw_tree

#: 30 people with 1 to 12 images: 6 with one image only
COUNTS = {f"person_{k:02d}": 1 + k % 12 for k in range(30)}


@pytest.fixture
def clean_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["facetransfer"])


def people_of(pairs) -> set[str]:
    return {p.name1 for p in pairs} | {p.name2 for p in pairs}


def test_each_fold_holds_as_many_same_as_different_pairs():
    pairs = make_pairs(COUNTS, same=60, different=60, folds=5, seed=3)
    per_fold = Counter((p.fold, p.same) for p in pairs)
    assert per_fold == {(k, same): 12 for k in range(5) for same in (True, False)}
    view1 = make_pairs(COUNTS, same=40, different=40)
    assert Counter((p.fold, p.same) for p in view1) == {(-1, True): 40, (-1, False): 40}


def test_same_seed_writes_the_same_file_and_another_seed_another(tmp_path):
    def written(seed: int, counts=COUNTS) -> bytes:
        path = write_pairs(make_pairs(counts, 50, 50, folds=5, seed=seed), tmp_path / f"pairs{seed}.txt", folds=5)
        return path.read_bytes()

    assert written(1) == written(1)
    assert written(1) == written(1, dict(reversed(COUNTS.items())))  # the order of the people does not matter
    assert written(1) != written(2)


def test_folds_share_no_person_and_read_back_as_view_2(tmp_path):
    pairs = make_pairs(COUNTS, same=50, different=50, folds=5, seed=0)
    path = write_pairs(pairs, tmp_path / "out" / "pairs.txt", folds=5)  # the missing folder is created
    assert path.read_text().splitlines()[0] == "5 10"
    back, official = read_pairs(path)
    assert official and back == pairs
    people = [people_of([p for p in pairs if p.fold == k]) for k in range(5)]
    assert all(not people[a] & people[b] for a in range(5) for b in range(a + 1, 5))
    assert sum(map(len, people)) <= len(COUNTS)
    view1 = make_pairs(COUNTS, 30, 30)
    assert write_pairs(view1, tmp_path / "dev.txt").read_text().startswith("30\n")
    assert read_pairs(tmp_path / "dev.txt") == (view1, False)


def test_no_pair_twice_and_no_image_with_itself_up_to_every_possible_pair():
    counts = {"a": 4, "b": 3, "c": 1}  # 6 + 3 same-person pairs; 12 + 4 + 3 different-person pairs
    pairs = make_pairs(counts, same=9, different=9)
    assert len(set(pairs)) == 18
    assert all(1 <= p.index1 <= counts[p.name1] and 1 <= p.index2 <= counts[p.name2] for p in pairs)
    assert all(p.index1 < p.index2 for p in pairs if p.same) and all(p.name1 < p.name2 for p in pairs if not p.same)
    assert "c" not in {p.name1 for p in pairs if p.same}
    big = make_pairs(COUNTS, same=600, different=600, folds=3, seed=5)
    keys = [(p.name1, p.index1, p.name2, p.index2) for p in big]
    assert len(set(keys)) == len(keys) and not [p for p in big if (p.name1, p.index1) == (p.name2, p.index2)]


def test_same_person_pairs_spread_over_the_people():
    counts = {"many": 200, **{f"p{k}": 3 for k in range(20)}}
    taken = Counter(p.name1 for p in make_pairs(counts, same=63, different=63) if p.same)
    assert taken == {name: 3 for name in counts}  # 3 each, not most of them from the one with 200 images


def test_impossible_requests_are_refused_with_what_is_possible():
    with pytest.raises(DataError, match=r"only 9 distinct same-person pairs are possible among 3 people with 8 "
                                        r"images; 10 asked"):
        make_pairs({"a": 4, "b": 3, "c": 1}, same=10, different=10)
    with pytest.raises(DataError, match=r"in 2 person-disjoint folds \(\d+ in the smallest\)"):
        make_pairs({"a": 4, "b": 3, "c": 1}, same=8, different=8, folds=2)
    with pytest.raises(ConfigError, match=r"same \(10\) and different \(12\) must be equal"):
        make_pairs(COUNTS, same=10, different=12)
    with pytest.raises(ConfigError, match="do not split into 3 folds"):
        make_pairs(COUNTS, same=10, different=10, folds=3)


def test_names_with_spaces_are_refused(tmp_path):
    pairs = make_pairs({"Ann Lee": 2, "Bob": 2}, 2, 2)
    with pytest.raises(DataError, match=r"rename the person folders \['Ann Lee'\]"):
        write_pairs(pairs, tmp_path / "pairs.txt")
    assert not (tmp_path / "pairs.txt").exists()


def test_made_pairs_of_a_person_folder_are_its_ith_images(tmp_path, capsys, clean_argv):
    root = make_folder_tree(tmp_path / "faces", identities=4, per_identity=6)  # 0.jpg 1.png 2.pgm 3.png ...
    out = tmp_path / "runs" / "pairs.txt"
    assert main(["pairs", "make", "--root", str(root), "--out", str(out), "--same", "12", "--folds", "2"]) == 0
    line = capsys.readouterr().out
    assert re.fullmatch(rf"24 pairs \(12 same-person, 12 different-person\) in 2 fold\(s\) of 4 people and \d+ "
                        rf"images of {re.escape(str(root))} written to {re.escape(str(out))}\n", line)
    protocol = PairsProtocol.load(out, root)
    assert protocol.official_folds and len(protocol) == 24
    ext = ["jpg", "png", "pgm", "png"]  # make_folder_tree's formats: person k's file i is ext[(k + i) % 4]
    assert all(protocol.key(name, i) == f"{name}/{i - 1}.{ext[(int(name[-1]) + i - 1) % 4]}"
               for p in protocol.pairs for name, i in p.images)
    name, last = protocol.pairs[0].name1, protocol.pairs[0].index2  # a same-person pair
    for image in sorted((root / name).iterdir(), key=lambda f: int(f.stem))[last - 1 :]:
        image.unlink()
    with pytest.raises(DataError, match=rf"{name}: no image {last} \(the folder holds {last - 1}\)"):
        PairsProtocol.load(out, root)


def test_verify_reads_pairs_made_for_lfw_and_for_a_person_folder(tmp_path, capsys, clean_argv):
    lfw = make_lfw_tree(tmp_path / "lfw", {"Alice_A": 6, "Bob_B": 5, "Carol_C": 4, "Dan_D": 2, "Eve_E": 1}, size=48)
    (lfw / "lfw-deepfunneled" / "Alice_A" / "Alice_A_0001.jpg").unlink()  # a partial copy keeps LFW's numbers
    faces = make_folder_tree(tmp_path / "faces", identities=4, per_identity=5)
    for root, same in ((lfw, 8), (faces, 6)):
        out = tmp_path / f"{root.name}.txt"
        assert main(["pairs", "make", "--root", str(root), "--out", str(out), "--same", str(same), "--folds", "1"]) == 0
        code = main(["verify", "--pairs", str(out), "--root", str(root), "--backbone", "scratch_cnn", "--input_size",
                     "48", "--num_workers", "0", "--folds", "2", "--out", str(tmp_path / f"verify-{root.name}")])
        printed = capsys.readouterr().out
        assert code == 0 and f"on {out.name} ({2 * same} pairs, " in printed
    lfw_pairs, _ = read_pairs(tmp_path / "lfw.txt")
    alice = {i for p in lfw_pairs for name, i in p.images if name == "Alice_A"}
    assert alice and 1 not in alice and alice <= {2, 3, 4, 5, 6}


def test_identities_from_a_names_file_or_a_split(tmp_path, capsys, clean_argv):
    root = make_folder_tree(tmp_path / "faces", identities=6, per_identity=4)
    names = tmp_path / "people.txt"
    names.write_text("# held-out people\nperson_1\nperson_3  # back later\n\nperson_4\n")
    out = tmp_path / "pairs.txt"
    args = ["pairs", "make", "--root", str(root), "--out", str(out), "--same", "6", "--folds", "1", "--identities"]
    assert main([*args, str(names)]) == 0
    assert people_of(read_pairs(out)[0]) == {"person_1", "person_3", "person_4"}
    classes = [f"person_{k}" for k in range(6)]
    split = SplitManifest(classes, [(f"{c}/0.jpg", k) for k, c in enumerate(classes[:4])], [],
                          [("person_4/0.jpg", 4), ("person_5/1.png", 5)], 4)
    split.save(tmp_path / "split.json")
    assert main([*args[:-3], "--same", "4", "--folds", "1", "--identities", str(tmp_path / "split.json")]) == 0
    assert people_of(read_pairs(out)[0]) == {"person_4", "person_5"}
    capsys.readouterr()


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["--identities", "{names}"], r"2 people of --identities \S+ have no images under \S+: nobody, Eve"),
        (["--same", "500", "--folds", "1"], r"only 36 distinct same-person pairs are possible among 6 people"),
        (["--same", "6", "--different", "8"], r"same \(6\) and different \(8\) must be equal"),
        (["--root", "{missing}"], r"image folder \S+ does not exist"),
        (["--identities", "{missing}"], r"--identities \S+ does not exist"),
        (["--same", "0"], r"--same"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, pattern, capsys, clean_argv):
    root = make_folder_tree(tmp_path / "faces", identities=6, per_identity=4)
    (tmp_path / "names.txt").write_text("person_0\nnobody\nEve\n")
    args = [a.format(names=tmp_path / "names.txt", missing=tmp_path / "missing") for a in args]
    code = main(["pairs", "make", "--root", str(root), "--out", str(tmp_path / "pairs.txt"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("facetransfer: error:") and len(err.strip().splitlines()) == 1
    assert re.search(pattern, err) and "Traceback" not in err and not (tmp_path / "pairs.txt").exists()


def test_pairs_make_and_its_help_import_no_lightning(tmp_path):
    root = make_folder_tree(tmp_path / "faces", identities=3, per_identity=3)
    script = ("import sys\nfrom facetransfer.cli import main\n"
              f"code = main(['pairs', 'make', '--root', {str(root)!r}, '--out', {str(tmp_path / 'p.txt')!r}, "
              "'--same', '3', '--folds', '1'])\n"
              "try:\n    main(['pairs', 'make', '--help'])\nexcept SystemExit:\n    pass\n"
              "print(code, 'lightning' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.strip().endswith("0 False"), done.stderr[-2000:]


def test_orl_pairs_read_back_and_verify(orl_root, tmp_path, capsys, clean_argv):
    out = tmp_path / "orl" / "pairs.txt"
    assert main(["pairs", "make", "--root", str(orl_root), "--out", str(out), "--same", "40", "--seed", "1"]) == 0
    assert "80 pairs (40 same-person, 40 different-person) in 10 fold(s) of 40 people" in capsys.readouterr().out
    protocol = PairsProtocol.load(out, orl_root)
    assert protocol.official_folds and all(re.fullmatch(r"s\d+/\d+\.pgm", k) for k in protocol.image_keys())
    assert protocol.key("s1", 10) == "s1/10.pgm"  # natural order: 10.pgm is the 10th, not the 2nd
    code = main(["verify", "--pairs", str(out), "--root", str(orl_root), "--backbone", "scratch_cnn", "--input_size",
                 "48", "--num_workers", "0", "--out", str(tmp_path / "verify")])
    assert code == 0 and "official View 2 folds" in capsys.readouterr().out
    assert json.loads((tmp_path / "verify" / "metrics.json").read_text())["num_images"] == len(protocol.image_keys())
