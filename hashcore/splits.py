"""The split names every layer speaks of: what a datamodule serves, the split file stores, the feature
cache keys and ``hashbench encode --split`` accepts. Defined once here, the lowest layer that needs them."""

#: every split a datamodule can serve (``val_*`` only when it has a validation split)
SPLITS = ("train", "query", "database", "val_query", "val_database")
#: the splits of the validation protocol (never the test queries)
VALIDATION_SPLITS = ("val_query", "val_database")
