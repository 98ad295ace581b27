"""Results: run records (:mod:`.records`), statistics (:mod:`.stats`) and leaderboards (:mod:`.leaderboard`)."""
from fewshot.results.records import RunRecord, load_records, save_record

__all__ = ["RunRecord", "load_records", "save_record"]
