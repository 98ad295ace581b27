"""Published tables: specs in ``benchmarks/`` (:mod:`.specs`) and running them (:mod:`.run`)."""
from fewshot.reproduce.run import reproduce
from fewshot.reproduce.specs import BenchmarkSpec, SpecError, load_spec

__all__ = ["BenchmarkSpec", "SpecError", "load_spec", "reproduce"]
