"""The Omniglot character table (alphabets and their global character ids) and the Vinyals et al. class split."""
from __future__ import annotations

ROTATIONS = (0, 90, 180, 270)

# First global character id of each alphabet, in id order (the XXXX of the official file names XXXX_YY.png).
BACKGROUND_ALPHABETS: tuple[tuple[str, int], ...] = (
    ("Arcadian", 1), ("Armenian", 27), ("Asomtavruli_(Georgian)", 68), ("Balinese", 108), ("Bengali", 132),
    ("Blackfoot_(Canadian_Aboriginal_Syllabics)", 178), ("Braille", 192), ("Cyrillic", 218),
    ("Early_Aramaic", 251), ("Syriac_(Estrangelo)", 273), ("Anglo-Saxon_Futhorc", 296), ("Futurama", 325),
    ("Grantha", 351), ("Greek", 394), ("Gujarati", 418), ("Hebrew", 466), ("Japanese_(hiragana)", 488),
    ("Inuktitut_(Canadian_Aboriginal_Syllabics)", 540), ("Malay_(Jawi_-_Arabic)", 556),
    ("Japanese_(katakana)", 596), ("Korean", 643), ("Latin", 683), ("Alphabet_of_the_Magi", 709),
    ("Mkhedruli_(Georgian)", 729), ("Burmese_(Myanmar)", 770), ("N_Ko", 804),
    ("Ojibwe_(Canadian_Aboriginal_Syllabics)", 837), ("Sanskrit", 851), ("Tagalog", 893), ("Tifinagh", 910),
)
EVALUATION_ALPHABETS: tuple[tuple[str, int], ...] = (
    ("Angelic", 965), ("Atemayar_Qelisayer", 985), ("Atlantean", 1011), ("Aurek-Besh", 1037), ("Avesta", 1063),
    ("Ge_ez", 1089), ("Glagolitic", 1115), ("Gurmukhi", 1160), ("Kannada", 1205), ("Keble", 1246),
    ("Malayalam", 1272), ("Manipuri", 1319), ("Mongolian", 1359), ("Old_Church_Slavonic_(Cyrillic)", 1389),
    ("Oriya", 1434), ("Syriac_(Serto)", 1480), ("Sylheti", 1503), ("Tengwar", 1531), ("Tibetan", 1556),
    ("ULOG", 1598),
)
# Mutable on purpose: a test cuts the evaluation set to its first alphabets to build a small official-layout zip.
_LAST_ID = {"background": 964, "evaluation": 1623}
_TABLES = {"background": BACKGROUND_ALPHABETS, "evaluation": EVALUATION_ALPHABETS}

# The Vinyals et al. (2016) split as used by Snell et al. (2017): val is five background alphabets, test is
# Gurmukhi's last four characters plus twelve evaluation alphabets, train is everything else.
VINYALS_VAL_ALPHABETS = frozenset({"Armenian", "Bengali", "Early_Aramaic", "Hebrew", "Mkhedruli_(Georgian)"})
VINYALS_TEST_ALPHABETS = frozenset({
    "Kannada", "Keble", "Malayalam", "Manipuri", "Mongolian", "Old_Church_Slavonic_(Cyrillic)", "Oriya", "Sylheti",
    "Syriac_(Serto)", "Tengwar", "Tibetan", "ULOG",
})
VINYALS_TEST_GURMUKHI_FROM = 42
VINYALS_SPLITS = ("train", "val", "test", "trainval")


def check_choice(value: str, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``, else a ValueError listing them."""
    if value not in allowed:
        raise ValueError(f"unknown Omniglot split or set {value!r}; expected one of {', '.join(allowed)}")
    return value


def first_id(which: str) -> int:
    """The global id of the first character of set ``which`` (``"background"`` or ``"evaluation"``)."""
    return _TABLES[check_choice(which, ("background", "evaluation"))][0][1]


def characters(which: str) -> list[tuple[str, str]]:
    """``(alphabet, "characterNN")`` of every character of the ``"background"`` or ``"evaluation"`` set, in id order."""
    table = _TABLES[check_choice(which, ("background", "evaluation"))]
    out = []
    for k, (alphabet, first) in enumerate(table):
        end = table[k + 1][1] if k + 1 < len(table) else _LAST_ID[which] + 1
        out += [(alphabet, f"character{n:02d}") for n in range(1, end - first + 1)]
    return out


def vinyals_split_of(alphabet: str, character: str) -> str:
    """``"train"``, ``"val"`` or ``"test"``: where the Vinyals split puts ``alphabet/character``."""
    if alphabet in VINYALS_VAL_ALPHABETS:
        return "val"
    if alphabet in VINYALS_TEST_ALPHABETS:
        return "test"
    if alphabet == "Gurmukhi" and int(character.removeprefix("character")) >= VINYALS_TEST_GURMUKHI_FROM:
        return "test"
    return "train"


def vinyals_characters(split: str) -> list[tuple[str, int, str, str]]:
    """``(which, row, alphabet, character)`` of the characters of Vinyals split ``split``, in id order."""
    wanted = {"trainval": ("train", "val")}.get(split, (split,))
    return [(which, row, alphabet, character)
            for which in ("background", "evaluation")
            for row, (alphabet, character) in enumerate(characters(which))
            if vinyals_split_of(alphabet, character) in wanted]


def vinyals_class_names(split: str) -> list[str]:
    """The classes of Vinyals split ``split`` as ``alphabet/characterNN/rotDDD``, each character in four rotations."""
    split = check_choice(split, VINYALS_SPLITS)
    return [f"{alphabet}/{character}/rot{deg:03d}" for _, _, alphabet, character in vinyals_characters(split)
            for deg in ROTATIONS]
