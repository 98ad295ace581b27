"""The record store: typed records that read every committed record and write them back losslessly, one naming
scheme, and damaged or foreign files reported by name."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fewshot.core.errors import DataError
from fewshot.reproduce.specs import load_spec
from fewshot.results.records import (MethodInfo, ReproduceInfo, RunRecord, TrainInfo, load_record,
                                     load_records, record_filename, record_name, save_record)

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p for p in (ROOT / "results").rglob("*.json")
                   if "episode_hash" in json.loads(p.read_text()))


def make_record(**changes) -> RunRecord:
    base = dict(method="protonet", dataset="toy", split="test", ways=5, shots=1, queries=15, episodes=3,
                episode_seed=0, episode_hash="ab" * 32, accuracies=[0.5, 0.75, 1.0])
    return RunRecord(**{**base, **changes})


def contains(big, small) -> bool:
    """Whether every key of ``small`` is in ``big`` with the same value (recursively)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and contains(big[k], v) for k, v in small.items())
    return big == small and type(big) is type(small)


def test_the_committed_records_are_all_found():
    assert len(COMMITTED) >= 22
    # results/perf/maml_throughput.json is JSON but no record: skipped.
    assert sorted(r.source for r in load_records(ROOT / "results")) == COMMITTED


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT / "results")))
def test_committed_records_load_typed_and_write_back_losslessly(path, tmp_path):
    data = json.loads(path.read_text())
    record = load_record(path)
    assert record.source == path
    # Typed parts, holding exactly what the JSON says.
    assert isinstance(record.config, MethodInfo) and isinstance(record.train, TrainInfo)
    assert record.config.method == data["config"]["method"] == record.method
    assert record.config.options == data["config"]["config"]
    assert record.config.train_config == data["config"]["train"]
    assert record.config.train_dataset == data["config"]["train_dataset"]
    assert record.train.checkpoint == data["train"]["checkpoint"] and record.train.steps == data["train"]["steps"]
    assert record.train.warnings == []                                   # older records have none
    assert record.accuracies == data["accuracies"] and record.episode_hash == data["episode_hash"]
    if "reproduce" in data["config"]:
        rep = record.config.reproduce
        assert isinstance(rep, ReproduceInfo) and rep.overrides == data["config"]["reproduce"]["overrides"]
        assert record.fingerprint == rep.fingerprint == data["config"]["reproduce"]["fingerprint"]
        # The one naming scheme gives the committed reproduce records their names.
        assert record_filename(record) == path.name
    # The dict-style reads of older code still work.
    assert record.config["backbone"] == data["config"]["backbone"] and record.train["loaded"] == data["train"]["loaded"]
    assert record.config.get("backbone_identity", "absent") == data["config"].get("backbone_identity", "absent")
    # Written back: every original key and value is kept (new fields are only added), and it reads back equal.
    out = record.to_json()
    assert contains(out, data)
    assert set(out) - set(data) <= {"fingerprint"} and set(out["train"]) - set(data["train"]) <= {"warnings"}
    saved = save_record(record, tmp_path)
    assert load_record(saved) == record and contains(json.loads(saved.read_text()), data)


def test_committed_fingerprints_match_their_spec_cells():
    """The fingerprint moved from the spec's cell to CellSpec: every committed record is still its cell's, so a
    resumed reproduce does not run it again."""
    for folder in sorted(p for p in (ROOT / "results").iterdir() if (p / "records").is_dir()):
        spec = load_spec(ROOT / "benchmarks" / f"{folder.name}.toml")
        for record in load_records(folder / "records"):
            rep = record.config.reproduce
            used = {k: v["used"] for k, v in rep.overrides.items()}
            cells = spec.cells(episodes=used.get("episodes"),
                               train_steps=used.get("train_steps") if "train_steps" in used else None)
            cell = next(c for c in cells if (c.setting.id, c.method.title) == (rep.setting, rep.row))
            assert cell.fingerprint == record.fingerprint, record.source
            assert cell.record_name() == record.source.name


def test_roundtrip_keeps_unknown_keys_and_warnings(tmp_path):
    record = RunRecord.from_json({**make_record().to_json(), "future_field": [1, 2]})
    record.config = MethodInfo.from_json({"method": "protonet", "train": {"steps": 3}, "new_key": "kept"})
    record.train = TrainInfo(checkpoint="x.pt", steps=3, warnings=["loss did not fall"])
    back = load_record(save_record(record, tmp_path))
    assert back == record and back.extra == {"future_field": [1, 2]}
    assert back.config.extra == {"new_key": "kept"} and back.config.train_config == {"steps": 3}
    assert back.train.warnings == ["loss did not fall"]
    assert json.loads(back.source.read_text())["train"]["warnings"] == ["loss did not fall"]


def test_plain_dicts_become_typed_parts():
    record = make_record(config={"train_dataset": "toy-small", "reproduce": {"setting": "5w1s", "row": "X",
                                                                             "fingerprint": "f" * 16}},
                         train={"checkpoint": "a.pt", "loaded": True})
    assert record.config.train_dataset == "toy-small" and record.config.reproduce.row == "X"
    assert record.train.checkpoint == "a.pt" and record.train.loaded is True
    assert record.fingerprint == "f" * 16          # a published-table cell's fingerprint is the record's


def test_one_naming_scheme():
    assert record_name("5w1s", "linear probe (EfficientNet-Lite0)", "c0d8c39816e4030d") == \
        "5w1s__linear-probe-efficientnet-lite0__c0d8c39816.json"
    a = make_record(fingerprint="0123456789abcdef")
    assert record_filename(a) == "toy-test-5w1s15q__protonet__0123456789.json"
    # Without a fingerprint the key hashes what the record describes: a rerun (other numbers, times, dates)
    # keeps the name, another configuration gets its own.
    b = make_record(accuracies=[1.0, 1.0, 1.0], created="2030-01-01", train_seconds=9.0, train={"loaded": True})
    c = make_record(config={"config": {"lr": 0.1}})   # other method options
    assert record_filename(make_record()) == record_filename(b) != record_filename(c)
    assert record_filename(c).startswith("toy-test-5w1s15q__protonet__")


@pytest.mark.parametrize("content, message", [
    ('{"method": "protonet", "accuracies": [0.5, 0.7', "not a valid JSON run record"),
    ("\x00\x01garbage", "not a valid JSON run record"),
    ('{"method": "protonet", "episode_hash": "ab", "accuracies": [0.5]}', "run record lacks 'dataset'"),
    (json.dumps({**make_record().to_json(), "accuracies": [0.5, "x"]}),
     "run record field 'accuracies' should be a non-empty list of numbers in [0, 1]"),
    (json.dumps({**make_record().to_json(), "ways": "5"}), "run record field 'ways' should be int"),
    (json.dumps({**make_record().to_json(), "version": 99}), "record version 99 is newer than this fewshot reads"),
])
def test_damaged_records_raise_data_error_naming_the_file(tmp_path, content, message):
    save_record(make_record(), tmp_path)
    bad = tmp_path / "sub" / "broken.json"
    bad.parent.mkdir()
    bad.write_text(content)
    for read in (lambda: load_records(tmp_path), lambda: load_record(bad), lambda: load_records([bad])):
        with pytest.raises(DataError) as error:
            read()
        assert str(error.value).startswith(f"{bad}: ") and message in str(error.value)


def test_foreign_json_is_skipped_in_folders_but_refused_by_name(tmp_path):
    save_record(make_record(), tmp_path)
    other = tmp_path / "benchmark.json"
    other.write_text('{"benchmark": "maml_throughput"}')
    assert load_records(tmp_path) == [make_record()]
    with pytest.raises(DataError, match=rf"^{other}: not a run record"):
        load_records(other)
    with pytest.raises(DataError, match=rf"^{tmp_path / 'missing'}: no such record file or folder$"):
        load_records(tmp_path / "missing")


def test_check_writable_dir(tmp_path):
    from fewshot.core.atomic import check_writable_dir
    from fewshot.core.errors import UsageError

    assert check_writable_dir(tmp_path / "new" / "records", "--out") == tmp_path / "new" / "records"
    assert (tmp_path / "new" / "records").is_dir() and not list((tmp_path / "new" / "records").iterdir())
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UsageError, match=rf"^--out {blocker / 'records'}: cannot write there \(.*\); choose a "
                                         r"writable folder or fix its permissions$"):
        check_writable_dir(blocker / "records", "--out")
    with pytest.raises(UsageError, match=rf"^--out {blocker}: a file is there, not a folder"):
        check_writable_dir(blocker, "--out")


def test_check_writable_dir_when_ranks_check_one_folder_at_once(tmp_path):
    # Two torchrun ranks probe the same --out folder together; a shared probe name made one rank's unlink fail.
    from concurrent.futures import ThreadPoolExecutor

    from fewshot.core.atomic import check_writable_dir

    folder = tmp_path / "records"
    with ThreadPoolExecutor(8) as pool:
        checked = list(pool.map(lambda _: check_writable_dir(folder, "--out"), range(400)))
    assert checked == [folder] * 400 and not list(folder.iterdir())
