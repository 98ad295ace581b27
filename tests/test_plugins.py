"""Plug-ins: a user's module named with --plugin, and an installed package's fewshot.methods entry points, put
their methods in `list`, `--method` and tables with no wrapper script; a broken one is one clear error."""
from __future__ import annotations

import sys
import textwrap

import pytest

from fewshot.cli import main
from fewshot.core import plugins
from fewshot.core.errors import UsageError
from fewshot.methods import list_methods

METHOD = textwrap.dedent('''
    from fewshot.methods.base import FewShotMethod, TrainKind, register_method
    from fewshot.methods.protonet import class_means, squared_distances


    @register_method("{name}")
    class Plugged(FewShotMethod):
        """Nearest class mean, from a plug-in."""

        paper = "a plug-in test"
        train_kind = TrainKind.NONE
        frozen_features = True

        def logits_from_features(self, support, support_labels, query, ways):
            return -squared_distances(query, class_means(support, support_labels, ways))
''')


def test_plugin_by_module_name_is_listed_and_runs(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_methods_xyz.py").write_text(METHOD.format(name="plugged-by-name"))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["--plugin", "my_methods_xyz", "list"]) == 0
    assert "plugged-by-name" in capsys.readouterr().out
    assert main(["--plugin", "my_methods_xyz", "--method", "plugged-by-name", "--baseline", "none",
                 "--dataset", "synthetic", "--backbone", "conv4", "--backbone-option", "hidden=8", "--shots", "1",
                 "--episodes", "4", "--queries", "2", "--quiet", "--out", str(tmp_path / "runs"),
                 "--checkpoint-dir", str(tmp_path / "ckpt")]) == 0
    assert "| plugged-by-name" in capsys.readouterr().out


def make_distribution(folder, name: str, value: str) -> None:
    info = folder / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[fewshot.methods]\nmine = {value}\n")


def test_entry_point_group_registers_an_installed_packages_methods(tmp_path, monkeypatch):
    (tmp_path / "installed_methods_xyz.py").write_text(METHOD.format(name="plugged-by-entry-point"))
    make_distribution(tmp_path, "fewshot-plugin-xyz", "installed_methods_xyz")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_scanned", set())
    assert "plugged-by-entry-point" in list_methods()


def test_a_broken_entry_point_names_its_package(tmp_path, monkeypatch):
    make_distribution(tmp_path, "fewshot-broken-xyz", "no_such_module_for_fewshot_xyz")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_scanned", set())
    with pytest.raises(UsageError, match=r"plug-in 'mine' of fewshot-broken-xyz \(no_such_module_for_fewshot_xyz\) "
                                         r"failed to import: ModuleNotFoundError.*fix or uninstall that package"):
        plugins.load_entry_points()
    monkeypatch.setattr(plugins, "_scanned", {plugins.ENTRY_POINT_GROUP})   # the broken one is gone again
    sys.modules.pop("no_such_module_for_fewshot_xyz", None)
