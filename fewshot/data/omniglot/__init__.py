"""Omniglot (Lake, Salakhutdinov & Tenenbaum, 2015): the Vinyals class split, Lake's background/evaluation setting,
the two "minimal" background sets and the official 20-run one-shot task.

Sources, in order: ``images_{background,evaluation}.npz`` (the omniglot_npz packing), else the official
``images_{background,evaluation}.zip``, else those zips downloaded from brendenlake/omniglot with their sha256
checked. Each is looked for in ``root``, ``root/omniglot_npz`` and ``root/omniglot``, so a root pointing at a folder
holding both of those works. Images are ink-bright uint8 ``[N, 1, S, S]``, resized from 105x105 by exact area
averaging; characters resized at one size are kept in the processed-data cache (:mod:`fewshot.core.cache`, under
``$FEWSHOT_CACHE/processed/omniglot``), never in the data root, which is only read.

Modules, by job: :mod:`.alphabets` (the character table, the Vinyals split), :mod:`.sources` (finding files,
checksums), :mod:`.archives` (reading npz, zips and PNGs), :mod:`.resize` (area resizing, ink), :mod:`.loaders`
(the registered datasets), :mod:`.runs` (the 20 runs). The names below are re-exported from them: to patch one
(``OFFICIAL_FILES``, say), patch it in its module.
"""
from __future__ import annotations

from fewshot.data.omniglot.alphabets import (BACKGROUND_ALPHABETS, EVALUATION_ALPHABETS, ROTATIONS,
                                             VINYALS_SPLITS, VINYALS_TEST_ALPHABETS, VINYALS_TEST_GURMUKHI_FROM,
                                             VINYALS_VAL_ALPHABETS, characters, vinyals_class_names,
                                             vinyals_split_of)
from fewshot.data.omniglot.archives import DRAWERS, RAW_SIZE
from fewshot.data.omniglot.loaders import (load_omniglot, load_omniglot_background, load_omniglot_characters,
                                           load_omniglot_evaluation, load_omniglot_small1, load_omniglot_small2)
from fewshot.data.omniglot.resize import area_resize
from fewshot.data.omniglot.runs import RUN_WAYS, RUNS, RunImage, load_omniglot_runs, locate_omniglot_runs
from fewshot.data.omniglot.sources import OFFICIAL_FILES

__all__ = ["BACKGROUND_ALPHABETS", "EVALUATION_ALPHABETS", "VINYALS_VAL_ALPHABETS", "VINYALS_TEST_ALPHABETS",
           "OFFICIAL_FILES", "RunImage", "area_resize", "characters", "load_omniglot", "load_omniglot_background",
           "load_omniglot_evaluation", "load_omniglot_small1", "load_omniglot_small2", "load_omniglot_characters",
           "load_omniglot_runs", "locate_omniglot_runs", "vinyals_class_names", "vinyals_split_of"]
