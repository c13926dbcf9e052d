"""The one Registry: its rules, and the entry-point groups of every kind of plug-in."""

from __future__ import annotations

import sys
import textwrap

import pytest

from facetransfer.cli import main
from facetransfer.cli.commands import TOOL_COMMANDS
from facetransfer.data.sources import SOURCES, FaceSource, get_source, list_sources
from facetransfer.errors import ConfigError
from facetransfer.models.weights import WEIGHTS_IMPORTERS, WeightsImporter, import_any
from facetransfer.registry import Registry
from facetransfer.strategies.base import STRATEGIES, Strategy
from facetransfer.training.freeze import FREEZE_POLICIES, frozen_stages_for, list_freeze_policies


def test_register_names_checks_and_lazy_references():
    shapes: Registry[tuple] = Registry("shape", "facetransfer.test_shapes", tuple, ordered=True)

    @shapes.register
    def square(side: int = 1):
        """A square."""
        return (side, side)

    shapes.register("pair")("builtins:tuple")  # a "module:attribute" reference, imported on first use
    assert shapes.names() == ["square", "pair"] and list(shapes) == shapes.names() and "pair" in shapes
    assert shapes.builders["pair"] == "builtins:tuple" and shapes.get("pair") is tuple
    assert shapes.summary("square") == "A square." and shapes.build("square", side=2) == (2, 2)
    with pytest.raises(ValueError, match="a shape named 'square' is already registered"):
        shapes.register("square")(lambda: (0, 0))
    with pytest.raises(TypeError, match="is not a facetransfer tuple"):
        shapes.register("number")(int)
    with pytest.raises(ConfigError, match=r"shape 'square': .*'edge'; it accepts: side"):
        shapes.build("square", edge=1)


def test_named_entries_are_registered_under_their_name():
    class Nameless(Strategy):
        pass

    class Misnamed(FaceSource):
        name = "other"

    with pytest.raises(ValueError, match="registered under its name: .*Nameless.* has name None"):
        STRATEGIES.register(Nameless)
    with pytest.raises(ValueError, match="has name 'other', not 'misnamed'"):
        SOURCES.register("misnamed")(Misnamed)
    assert "Nameless" not in STRATEGIES.builders and "misnamed" not in SOURCES.builders


PLUGIN = textwrap.dedent(
    """
    from pathlib import Path
    from facetransfer.data import FaceRecord, FaceSource
    from facetransfer.models.weights import WeightsImporter

    class Listed(FaceSource):
        name = "listed"

        def __init__(self, root=None, people: int = 2):
            super().__init__(root)
            self.people = people

        def records(self):
            return [FaceRecord(f"p{i}", f"p{i}/0.png") for i in range(self.people)]

    def last(arg, stages):
        return stages[-int(arg or 1):]

    def hello(argv):
        print("hello", *argv)
        return 0

    IMPORTER = WeightsImporter(lambda path: path.suffix == ".mine", lambda path, force: Path("/cache") / path.name)
    PAIR = (IMPORTER.accepts, IMPORTER.load)  # not a WeightsImporter
    """
)
ENTRY_POINTS = """
[facetransfer.sources]
listed = kinds_plugin:Listed
[facetransfer.freeze_policies]
last = kinds_plugin:last
[facetransfer.commands]
hello = kinds_plugin:hello
[facetransfer.weights_importers]
mine = kinds_plugin:IMPORTER
broken = kinds_plugin:PAIR
"""


def test_every_kind_finds_its_plugins_through_its_entry_point_group(tmp_path, monkeypatch, capsys, caplog):
    """One installed distribution adds a data source, a freeze policy, a command and a weights importer;
    an entry that is not what its group holds is logged and skipped."""
    (tmp_path / "kinds_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "kinds_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kinds-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "kinds_plugin", raising=False)
    for registry in (SOURCES, FREEZE_POLICIES, TOOL_COMMANDS, WEIGHTS_IMPORTERS):
        monkeypatch.setattr(registry, "builders", dict(registry.builders))
        monkeypatch.setattr(registry, "plugins_loaded", False)

    assert "listed" in list_sources() and len(get_source("listed", people=3).records()) == 3
    with pytest.raises(ConfigError, match="dataset 'listed' does not take dataset_args 'folks'; it takes: people"):
        get_source("listed", folks=3)
    assert "last" in list_freeze_policies() and frozen_stages_for("last:2", ["a", "b", "c"]) == ["b", "c"]
    assert main(["hello", "world"]) == 0 and capsys.readouterr().out == "hello world\n"
    assert WEIGHTS_IMPORTERS.names()[-1] == "mine" and "broken" not in WEIGHTS_IMPORTERS.names()
    assert isinstance(WEIGHTS_IMPORTERS.get("mine"), WeightsImporter)
    assert "could not load facetransfer.weights_importers plug-in 'broken'" in caplog.text
    assert str(import_any(tmp_path / "net.mine")) == "/cache/net.mine"
