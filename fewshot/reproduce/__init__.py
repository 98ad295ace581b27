"""Published tables: specs in ``benchmarks/`` (:mod:`.specs`) and running them (:mod:`.run`)."""
from fewshot.reproduce.run import render_tables, reproduce, tables_from_records, write_tables
from fewshot.reproduce.specs import BenchmarkSpec, SpecError, load_spec

__all__ = ["BenchmarkSpec", "SpecError", "load_spec", "render_tables", "reproduce", "tables_from_records",
           "write_tables"]
