"""A library xptrain has never heard of that is a correct Array API namespace."""

from array_api_strict import *  # noqa: F403
from array_api_strict import __array_api_version__  # noqa: F401
