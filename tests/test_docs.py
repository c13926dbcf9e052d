"""The documentation speaks to users: no words about how the project was staged or built."""

from __future__ import annotations

import re
import shlex
import shutil
import textwrap
import warnings

import pytest

from .fakes import REPO

PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), REPO / "benchmarks" / "README.md",
                *(REPO / "benchmarks").glob("*.sh")])
#: phrases that describe the making of the software, not the software
STAGING = [r"we aimed", r"to be measured", r"\bbudget\b", r"\.carry\b", r"\$OUT\b", r"before this work",
           r"History:", r"\(3\.11 here\)", r"what \.ci/run does", r"no network here", r"still empty",
           r"64 MiB", r"\bissue #?\d+"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_say_nothing_about_how_the_project_was_made(page):
    text = page.read_text(encoding="utf-8")
    found = [m.group(0) for pattern in STAGING for m in re.finditer(pattern, text, re.IGNORECASE)]
    assert not found, f"{page.relative_to(REPO)}: {found}"


def test_real_data_commands_do_not_point_at_the_projects_test_data():
    """Users have no ../shared: the README's commands use data/lfw (facetransfer data download lfw)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = [line for line in readme.splitlines() if line.startswith(("facetransfer", "make", "  data ="))]
    assert commands and not [line for line in commands if "../shared" in line]


def _commands(block: str) -> list[list[str]]:
    """The ``facetransfer`` command lines of a README code block (continuations joined, comments dropped)."""
    lines = block.replace("\\\n", " ").splitlines()
    found = []
    for line in lines:
        line = re.sub(r"\s+#.*$", "", line.strip())
        for part in line.split("&&"):
            argv = shlex.split(part)
            if argv and argv[0] == "facetransfer":
                found.append(argv[1:])
    return found


#: appended to keep the README's runs small and quiet in the test
FAST = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
SMALL_SYNTHETIC = ["--data.dataset_args", "{num_identities: 6, images_per_identity: 8, image_size: 64}"]


def test_the_readmes_commands_run_on_built_in_data_and_a_person_folder(tmp_path, monkeypatch, capsys, imagenet_mobilenet,
                                                                       dlib_face_api):
    """Every README command that needs no download, as written (smaller data, one epoch): no ../shared, no network;
    and the Python snippet, without a Lightning warning a user cannot act on."""
    from facetransfer.cli import main

    from .fakes import make_folder_tree

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    make_folder_tree(tmp_path / "faces", identities=4, per_identity=6, size=64)
    (tmp_path / "new_photos").mkdir()
    for person in ("person_0", "person_1"):
        shutil.copy(next((tmp_path / "faces" / person).iterdir()), tmp_path / "new_photos" / f"{person}.png")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    built_in = next(b for b in blocks if "configs/data/synthetic.yaml" in b)
    photos = next(b for b in blocks if "--data.root faces/" in b)
    ran = []
    for argv in _commands(built_in) + _commands(photos):
        if argv[0] in ("sweep", "report"):  # the demo grid takes minutes; tests/test_sweep.py runs a tiny one
            continue
        if argv[0] in ("fit", "test", "predict") and "--print_config" not in argv:
            argv = [*argv, *FAST, "--data.num_workers", "0", *(SMALL_SYNTHETIC if "synthetic.yaml" in argv else [])]
        try:
            code = main(argv)
        except SystemExit as done:  # --print_config
            code = done.code
        captured = capsys.readouterr()
        assert code in (0, None), f"facetransfer {' '.join(argv)}: {captured.err[-1500:]}"
        assert "Warning" not in captured.err, f"facetransfer {' '.join(argv)}: {captured.err[-1500:]}"
        ran.append(argv[0])
    assert {"fit", "test", "predict", "export", "gallery", "backbones", "strategies"} <= set(ran)
    assert (tmp_path / "face.onnx").is_file() and (tmp_path / "matches.csv").is_file()

    snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    snippet = textwrap.dedent(snippet).replace("max_epochs=20", "max_epochs=20, enable_progress_bar=False")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        exec(compile(snippet, "README.md", "exec"), {})
    lightning = [str(w.message) for w in seen if "lightning" in (w.filename or "")]
    assert not lightning, lightning
