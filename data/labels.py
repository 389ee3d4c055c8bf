"""The Cityscapes label tables, taken from the official `cityscapesscripts` package.

Everything that maps label ids, train ids (19 classes) and categories (7 classes) or
colours them reads from here, so there is exactly one table in the repository.
"""
from cityscapesscripts.helpers.labels import labels as _OFFICIAL_LABELS

VOID = -1

# The 7 categories that count (category id 1..7 -> 0..6); category 0 is "void".
CATEGORY_NAMES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")

# The 19 evaluated classes, indexed by train id.
_TRAIN_LABELS = sorted((l for l in _OFFICIAL_LABELS if 0 <= l.trainId < 255), key=lambda l: l.trainId)
TRAIN_ID_NAMES = tuple(l.name for l in _TRAIN_LABELS)
TRAIN_ID_TO_CATEGORY = tuple(l.categoryId - 1 for l in _TRAIN_LABELS)
TRAIN_ID_COLOURS = tuple(l.color for l in _TRAIN_LABELS)

# A category is drawn in the colour of its first train class (road, building, pole, ...).
CATEGORY_COLOURS = tuple(
    next(TRAIN_ID_COLOURS[t] for t, c in enumerate(TRAIN_ID_TO_CATEGORY) if c == cat)
    for cat in range(len(CATEGORY_NAMES))
)


def label_id_tables():
    """Lookup arrays over raw label ids 0..33 (and -1): (to_category, to_train_id), void = -1."""
    to_category, to_train = {}, {}
    for l in _OFFICIAL_LABELS:
        to_category[l.id] = l.categoryId - 1 if l.categoryId > 0 else VOID
        to_train[l.id] = l.trainId if 0 <= l.trainId < 255 else VOID
    return to_category, to_train


def class_names(num_classes):
    if num_classes == 7:
        return CATEGORY_NAMES
    if num_classes == 19:
        return TRAIN_ID_NAMES
    raise ValueError(f"--classes must be 7 or 19, got {num_classes}")


def class_colours(num_classes):
    return CATEGORY_COLOURS if num_classes == 7 else TRAIN_ID_COLOURS
