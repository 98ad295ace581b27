"""Text datasets: intents (BANKING77, CLINC150, HWU64) and relations (FewRel), as token ids of a sentence encoder.

The same :class:`~fewshot.data.dataset.ClassDataset` as images: ``data`` holds int64 token ids ``[N, L]`` (``-1``
after each text's end), tokenised once per dataset and encoder and cached (:mod:`.tokens`), so the episode sampler,
episode hashes, the harness and the records work unchanged; a sentence-encoder backbone
(:mod:`fewshot.backbones.text_encoders`) maps ids to features. Modules: :mod:`.encoders` (which model, which
tokenizer), :mod:`.tokens`, :mod:`.common` (corpus, class split), :mod:`.intents`, :mod:`.fewrel`,
:mod:`.intent_fewshot` (the published 5- and 10-shot intent splits, as fixed episode sets).
"""
from __future__ import annotations

from fewshot.data.text import fewrel, intents  # noqa: F401  (register the datasets)
from fewshot.data.text.encoders import DEFAULT_ENCODER, ENCODERS, encoder_folder, tokenizer_identity

__all__ = ["DEFAULT_ENCODER", "ENCODERS", "encoder_folder", "tokenizer_identity"]
