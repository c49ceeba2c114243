"""A correct Array API namespace whose arrays have ``__array__`` but no DLPack."""

from _hidden import WithArray, namespace

__getattr__ = namespace(WithArray)
