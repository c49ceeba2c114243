"""A model file whose import fails."""

raise RuntimeError("this model file is broken on purpose")
