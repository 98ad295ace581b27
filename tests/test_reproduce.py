"""Published-table specs: reading and checking them, running a tiny one, resuming it after an interruption, shrunk
runs recorded and stated, and the Lake et al. spec reading the official runs."""
from __future__ import annotations

import re

import pytest

from fewshot.cli import main
from fewshot.data import register_dataset, sample_episodes
from fewshot.data.fixed import register_fixed_episodes
from fewshot.methods import list_methods
from fewshot.reproduce.run import check_cell
from fewshot.results.records import load_records
from fewshot.runner import Runner
from fewshot.reproduce.specs import SpecError, list_specs, load_spec

from conftest import blob_dataset

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@register_dataset("test-reproduce-blobs")
def load_blobs(split, root, **options):
    full = blob_dataset(classes=20, per_class=8, name="test-reproduce-blobs")
    return full.select_classes(list(range(12)) if split == "train" else list(range(12, 20)),
                               name=f"test-reproduce-blobs/{split}")


@register_fixed_episodes("test-fixed-blobs")
def fixed_blobs(root, **options):
    test = load_blobs("test", root)
    episodes = sample_episodes(test, 4, 1, 2, episodes=5, seed=123)
    episodes.seed = None  # given, not sampled
    return test, episodes


SPEC = """
name = "tiny"
title = "A tiny table"
metric = "accuracy"
baseline = "finetune"
notes = ["A test spec."]

[source]
paper = "Nobody (2024). A paper"
table = "Table 1"
checked = "made up"

[defaults]
dataset = "test-reproduce-blobs"
queries = 2
episodes = 6

[[settings]]
id = "3w1s"
ways = 3
shots = 1

[[settings]]
id = "fixed"
label = "fixed episodes"
ways = 4
shots = 1
fixed_episodes = "test-fixed-blobs"

[[methods]]
method = "protonet"
label = "ProtoNet"
paper_row = "Prototypical Networks"
backbone = "conv4"
backbone_options = { hidden = 8 }
train = { steps = 2, ways = 4, queries = 2 }

[[methods]]
method = "finetune"
backbone = "conv4"
backbone_options = { hidden = 8 }
train = { steps = 2, batch_size = 16 }

[[methods]]
method = "mhd"
settings = ["3w1s"]

[[paper]]
label = "Prototypical Networks"
values = { 3w1s = 90.0 }
"""


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(SPEC)
    return path


def args(tmp_path, spec_file, *extra):
    return ["reproduce", str(spec_file), "--out", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ckpt"),
            "--device", "cpu", "--quiet", *extra]


def test_interrupted_run_resumes_where_it_stopped(tmp_path, spec_file, monkeypatch, capsys):
    calls = []
    original = Runner.run

    def interrupted(self, cell):
        calls.append((cell.method, cell.shots, cell.fixed_episodes))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, cell)

    monkeypatch.setattr(Runner, "run", interrupted)
    assert main(args(tmp_path, spec_file)) == 130
    records = tmp_path / "out" / "records"
    assert len(list(records.glob("*.json"))) == 1 and not list(records.glob("*.tmp"))
    assert "run the same command again" in capsys.readouterr().err
    assert (tmp_path / "out" / "table.md").is_file()  # the tables are written for what is done
    first = calls[0]

    calls.clear()
    monkeypatch.setattr(Runner, "run", lambda self, cell: (calls.append((cell.method, cell.shots,
                                                                         cell.fixed_episodes)),
                                                           original(self, cell))[1])
    assert main(args(tmp_path, spec_file)) == 0
    assert first not in calls and len(calls) == 4   # 5 cells, the first one reused
    out = capsys.readouterr().out
    assert "Prototypical Networks — ours: ProtoNet" in out and "90.00" in out and "1 reused" in out

    stored = load_records(records)
    assert len(stored) == 5
    by = {(r.config["reproduce"]["setting"], r.config["reproduce"]["row"]): r for r in stored}
    # Every method of a setting was scored on the same episodes; the fixed set is recorded as such.
    assert by["3w1s", "ProtoNet"].episode_hash == by["3w1s", "finetune"].episode_hash == by["3w1s", "mhd"].episode_hash
    fixed = by["fixed", "ProtoNet"]
    assert fixed.dataset == "test-fixed-blobs" and fixed.episode_seed is None and fixed.episodes == 5
    assert fixed.config["train_dataset"] == "test-reproduce-blobs" and fixed.ways == 4
    assert by["3w1s", "ProtoNet"].config["reproduce"]["overrides"] == {}

    table = (tmp_path / "out" / "table.md").read_text()
    assert "## A tiny table" in table and "Shortened" not in table and "| fixed episodes" in table
    assert "Difference to `finetune`" in table and "Hardware:" in table and "Table 1" in table
    csv = (tmp_path / "out" / "table.csv").read_text()
    assert "gap" in csv and "Prototypical Networks" in csv
    assert (tmp_path / "out" / "plot.png").read_bytes().startswith(b"\x89PNG")

    # Nothing left to run: a rerun only rebuilds the tables.
    calls.clear()
    assert main(args(tmp_path, spec_file)) == 0 and calls == []


def test_shrunk_runs_are_recorded_and_stated(tmp_path, spec_file, capsys):
    assert main(args(tmp_path, spec_file, "--train-steps", "1", "--episodes", "4", "--cells",
                     "3w1s/ProtoNet,3w1s/mhd")) == 0
    stored = {r.method: r for r in load_records(tmp_path / "out" / "records")}
    assert sorted(stored) == ["mhd", "protonet"]
    for r in stored.values():
        assert r.config["reproduce"]["overrides"]["episodes"] == {"used": 4, "spec": 6} and len(r.accuracies) == 4
    assert stored["protonet"].config["reproduce"]["overrides"]["train_steps"] == {"used": 1, "spec": 2}
    assert "train_steps" not in stored["mhd"].config["reproduce"]["overrides"]   # it does not train
    assert stored["protonet"].train["steps"] == 1 and stored["protonet"].config["train"]["steps"] == 1
    table = (tmp_path / "out" / "table.md").read_text()
    assert "Shortened run" in table and "1 optimiser steps" in table and "4 test episodes** instead of 6" in table
    assert "not run yet" in table  # the cells it was told to leave out

    # The paper's schedule is another configuration: none of its cells has a result yet.
    capsys.readouterr()
    assert main(args(tmp_path, spec_file, "--plan")) == 0
    plan = capsys.readouterr().out
    assert "3w1s/ProtoNet" in plan and plan.count("done") == 0 and plan.count("to run") == 5
    assert main(args(tmp_path, spec_file, "--plan", "--train-steps", "1", "--episodes", "4")) == 0
    assert capsys.readouterr().out.count("done") == 2


def test_table_only_runs_nothing_and_fills_the_readme_section(tmp_path, spec_file, monkeypatch):
    monkeypatch.setattr(Runner, "run", lambda self, cell: pytest.fail("must not run"))
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\n<!-- results:begin spec=tiny -->\nstale\n<!-- results:end -->\n\nEnd.\n")
    assert main(args(tmp_path, spec_file, "--table-only", "--readme", str(readme))) == 0
    assert "not run yet" in (tmp_path / "out" / "table.md").read_text()
    text = readme.read_text()
    assert "stale" not in text and "## A tiny table" in text and text.endswith("<!-- results:end -->\n\nEnd.\n")
    assert "generated by `python -m fewshot.bench reproduce" in text


def test_spec_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC.replace('paper_row = "Prototypical Networks"', 'paper_row = "ProtoNets"'))
    with pytest.raises(SpecError, match="paper row 'ProtoNets'"):
        load_spec(bad)
    bad.write_text(SPEC.replace('episodes = 6', 'episodes = 6\nepisode = 7'))
    with pytest.raises(SpecError, match=r"unknown key\(s\) \['episode'\]"):
        load_spec(bad)
    bad.write_text(SPEC.replace('settings = ["3w1s"]', 'settings = ["3w9s"]'))
    with pytest.raises(SpecError, match="3w9s"):
        load_spec(bad)
    bad.write_text(SPEC.replace('fixed_episodes = "test-fixed-blobs"', 'fixed_episodes = "test-fixed-blobs"\n'
                                                                    'protocol = "meta-dataset"'))
    with pytest.raises(SpecError, match="a fixed episode set has its own episodes; drop protocol or fixed_episodes"):
        load_spec(bad)
    bad.write_text(SPEC.replace('shots = 1\n', 'shots = 1\nprotocol = "meta"\n', 1))
    with pytest.raises(SpecError, match=r"settings\[0\]\.protocol: 'meta' is not one of fixed, meta-dataset"):
        load_spec(bad)
    assert main(["reproduce", str(tmp_path / "nope.toml")]) == 2


def test_a_setting_may_draw_meta_dataset_episodes(tmp_path):
    good = tmp_path / "md.toml"
    good.write_text(SPEC.replace('shots = 1\n', 'shots = 1\nprotocol = "meta-dataset"\n', 1))
    cells = {(c.setting.id, c.spec.method): c.spec for c in load_spec(good).cells()}
    assert cells["3w1s", "protonet"].protocol == "meta-dataset" and cells["fixed", "protonet"].protocol == "fixed"


@pytest.mark.parametrize("path", list_specs(ROOT / "benchmarks"), ids=lambda p: p.stem)
def test_every_published_spec_is_well_formed(path):
    spec = load_spec(path)
    assert spec.name == path.stem and spec.source.paper and spec.source.table
    # A published table has the paper's numbers; a table of the suite's own says so as its source.
    assert spec.paper or "(this suite)" in spec.source.paper
    cells = spec.cells()
    assert cells and len({c.record_name() for c in cells}) == len(cells)
    for cell in cells:
        if cell.spec.method in list_methods():
            assert check_cell(cell) is None, cell.id
    # The paper's numbers are percentages of the spec's metric.
    assert all(0 < v < 100 for row in spec.paper for v in row.values.values())


def test_lake_spec_reads_the_official_runs(shared_data):
    spec = load_spec(ROOT / "benchmarks" / "lake2015-omniglot-runs.toml")
    cells = spec.cells()
    assert {c.spec.dataset for c in cells} == {"omniglot-background", "omniglot-small1", "omniglot-small2"}
    assert all(c.spec.fixed_episodes == "omniglot-runs" and c.spec.train_split == "train" for c in cells)
    assert spec.paper_value("Modified Hausdorff Distance", "background") == 38.8
    if not (shared_data / "omniglot" / "all_runs.zip").is_file():
        pytest.skip("all_runs.zip is absent")
    protonet = next(c for c in cells if c.id == "small1/ProtoNet")
    test_set, episodes = Runner(data_root=shared_data, device="cpu", progress=False).test_data(protonet.spec)
    assert len(episodes) == 20 and episodes.ways == 20 and episodes.shots == 1 and episodes.seed is None
    assert test_set.data.shape == (800, 1, 28, 28)


# --------------------------------------------------------------------------------------------------------------
# Everything is checked before any cell runs


@pytest.fixture
def no_running(monkeypatch):
    monkeypatch.setattr(Runner, "run", lambda self, cell: pytest.fail("a cell ran before the spec was checked"))


@pytest.mark.parametrize("change, message", [
    # The last method's training keys: found before the first method's cells run.
    (('train = { steps = 2, batch_size = 16 }', 'train = { steps = 2, batch_sise = 16 }'),
     r"methods\[1\]\.train: unknown training key\(s\) \['batch_sise'\]; TrainConfig has \["),
    (('method = "mhd"', 'method = "mhdd"'),
     r"methods\[2\]\.method: unknown method 'mhdd'\. Did you mean 'mhd'\? Known: anil, baseline\+\+, finetune"),
    (('[[methods]]\nmethod = "mhd"', '[[methods]]\nmethod = "mhd"\nmethod_options = { treshold = 0.5 }'),
     r"methods\[2\]\.method_options: method 'mhd' has no option\(s\) \['treshold'\]; its options are \["),
    (('backbone = "conv4"\nbackbone_options = { hidden = 8 }\ntrain = { steps = 2, batch_size',
      'backbone = "conv5"\nbackbone_options = { hidden = 8 }\ntrain = { steps = 2, batch_size'),
     r"methods\[1\]\.backbone: unknown backbone 'conv5'\. Did you mean 'conv4'\?"),
    (('dataset = "test-reproduce-blobs"', 'dataset = "test-reproduce-blob"'),
     r"settings\[0\]\.dataset: unknown dataset 'test-reproduce-blob'\. Did you mean 'test-reproduce-blobs'"),
    (('fixed_episodes = "test-fixed-blobs"', 'fixed_episodes = "test-fixed-blob"'),
     r"settings\[1\]\.fixed_episodes: unknown fixed episode set 'test-fixed-blob'"),
    (('id = "3w1s"\nways = 3', 'id = "3w1s"\nways = "3"'), r"settings\[0\]\.ways: should be an integer, got '3'"),
    (('train = { steps = 2, ways = 4, queries = 2 }', 'train = { steps = 2.5, ways = 4, queries = 2 }'),
     r"methods\[0\]\.train\.steps: should be an integer, got 2\.5"),
    (('backbone_options = { hidden = 8 }\ntrain = { steps = 2, batch_size', 'backbone_options = { hiden = 8 }\ntrain = { steps = 2, batch_size'),
     r"methods\[1\]\.backbone_options: backbone 'conv4' has no option\(s\) \['hiden'\]"),
    (('baseline = "finetune"', 'baseline = "fine-tune"'), r"baseline 'fine-tune' is none of the \[\[methods\]\]"),
    (('ways = 4\nshots = 1', 'ways = 4\nshots = 1\n[settings.dataset_options]\nx = 1\n[[settings]]\nid = "x"'),
     r"settings\[2\]: missing 'ways'"),
])
def test_spec_is_checked_whole_before_anything_runs(tmp_path, spec_file, no_running, capsys, change, message):
    old, new = change
    assert old in SPEC, old
    spec_file.write_text(SPEC.replace(old, new, 1))
    assert main(args(tmp_path, spec_file)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {spec_file}") and err.count("\n") == 1, err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()   # nothing written either


def test_toml_syntax_error_names_the_file(tmp_path, spec_file, no_running, capsys):
    spec_file.write_text(SPEC.replace('ways = 3', 'ways = = 3'))
    with pytest.raises(SpecError, match=rf"^{spec_file}: TOML syntax error: "):
        load_spec(spec_file)
    assert main(args(tmp_path, spec_file)) == 2
    assert capsys.readouterr().err.startswith(f"error: {spec_file}: TOML syntax error: ")
    assert main(["reproduce", str(tmp_path / "nope.toml")]) == 2
    assert f"no benchmark spec '{tmp_path / 'nope.toml'}'" in capsys.readouterr().err


def test_a_second_bad_spec_stops_the_first_from_running(tmp_path, spec_file, no_running, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC.replace('name = "tiny"', 'name = "bad"').replace("steps = 2, ways = 4", "step = 2, ways = 4"))
    assert main(["reproduce", str(spec_file), str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "unknown training key(s) ['step']" in capsys.readouterr().err


def test_bad_cells_pattern_is_a_usage_error(tmp_path, spec_file, no_running, capsys):
    assert main(args(tmp_path, spec_file, "--cells", "9w9s")) == 2
    assert capsys.readouterr().err.startswith("error: --cells: no cell matches ['9w9s']; cells are ['3w1s/ProtoNet'")


def test_unwritable_out_is_found_before_any_work(tmp_path, spec_file, no_running, capsys):
    (tmp_path / "out").write_text("a file where the output folder should be")
    assert main(args(tmp_path, spec_file)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {tmp_path / 'out' / 'records'}: cannot write there (")
    assert "choose a writable folder" in err


def test_damaged_stored_record_is_named_before_any_work(tmp_path, spec_file, no_running, capsys):
    (tmp_path / "out" / "records").mkdir(parents=True)
    broken = tmp_path / "out" / "records" / "3w1s__protonet__0123456789.json"
    broken.write_text('{"method": "protonet", "accuracies": [0.5,')
    assert main(args(tmp_path, spec_file)) == 1
    assert capsys.readouterr().err.startswith(f"error: {broken}: not a valid JSON run record")


def test_readme_without_the_section_is_found_before_any_work(tmp_path, spec_file, no_running, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# No markers\n")
    assert main(args(tmp_path, spec_file, "--readme", str(readme))) == 1
    assert capsys.readouterr().err.startswith(f"error: {readme}: expected one line '<!-- results:begin spec=tiny -->'")


# --------------------------------------------------------------------------------------------------------------
# Tables are a function of the spec and the stored records


def fake_records(spec, out, accuracy, warnings=()):
    """A record for every cell of ``spec``, as a run would save it, without running anything."""
    from fewshot.results.records import ReproduceInfo, RunRecord, save_record

    for cell in spec.cells():
        s = cell.spec
        record = RunRecord(method=s.method, dataset=s.fixed_episodes or s.dataset, split=s.test_split, ways=s.ways,
                           shots=s.shots, queries=s.queries, episodes=4, episode_seed=s.seed,
                           episode_hash=f"{cell.setting.id}".ljust(64, "0"), accuracies=list(accuracy(cell)),
                           train_seconds=1.0, eval_seconds=0.5, created="2024-01-01T00:00:00+00:00",
                           config={"method": s.method, "train_dataset": s.dataset},
                           train={"checkpoint": f"{s.method}.pt", "warnings": list(warnings(cell) if warnings else [])},
                           environment={"device": "cpu", "cpu": "x86_64", "threads": 1}, fingerprint=cell.fingerprint)
        record.config.reproduce = ReproduceInfo(spec=spec.name, setting=cell.setting.id,
                                                setting_label=cell.setting.title, row=cell.method.title,
                                                paper_row=cell.method.paper_row, fingerprint=cell.fingerprint)
        save_record(record, out / "records")


def test_tables_render_from_records_alone_and_flag_warnings(tmp_path, spec_file, no_running):
    from fewshot.reproduce.run import render_tables, tables_from_records

    spec = load_spec(spec_file)
    out = tmp_path / "out"

    def accuracy(cell):   # mhd sits at chance (1/3 in the 3-way setting); the others do well
        return [1 / 3, 0.0, 2 / 3, 1 / 3] if cell.method.method == "mhd" else [1.0, 0.75, 1.0, 1.0]

    fake_records(spec, out, accuracy, warnings=lambda c: ["loss did not fall"] if c.id == "fixed/finetune" else [])
    files = render_tables(tables_from_records(spec, out))
    assert sorted(files) == ["plot.png", "table.csv", "table.md"]
    table = files["table.md"].decode()
    mhd = next(line for line in table.splitlines() if line.startswith("| 3w1s") and "ours: mhd" in line)
    assert "33.33 ± " in mhd and mhd.rstrip(" |").split("|")[-2].strip().endswith("(!)")
    marked = [line for line in table.splitlines() if line.startswith("| ") and "(!)" in line]
    assert len(marked) == 2 + 2   # two rows in the comparison, two cells in the leaderboard
    assert "(!) 3w1s / ours: mhd: accuracy at chance: 33.33 ± " in table
    assert "(!) fixed episodes / ours: finetune: loss did not fall" in table
    assert "- (!) `finetune` in fixed episodes: loss did not fall" in table
    assert "- Regenerate from the records: `python -m fewshot.bench reproduce " + str(spec_file) + \
        " --table-only --out " + str(out) + "`" in table
    csv = files["table.csv"].decode()
    assert "loss did not fall" in csv and "accuracy at chance" in csv
    # --table-only writes exactly these bytes; and again: nothing in them depends on the invocation.
    for _ in range(2):
        assert main(args(tmp_path, spec_file, "--table-only")) == 0
        assert {name: (out / name).read_bytes() for name in files} == files
