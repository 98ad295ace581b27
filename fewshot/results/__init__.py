"""Results: the record store (:mod:`.records`), warnings made visible (:mod:`.checks`)
and leaderboards (:mod:`.leaderboard`)."""
from fewshot.results.checks import record_warnings
from fewshot.results.records import (MethodInfo, ReproduceInfo, RunRecord, TrainInfo, load_record, load_records,
                                     save_record)

__all__ = ["MethodInfo", "ReproduceInfo", "RunRecord", "TrainInfo", "load_record", "load_records", "record_warnings",
           "save_record"]
