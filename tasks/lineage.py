"""Where flows/ imports lineage from; the code lives in tasks.registry.lineage (facts: data
version, commit, hashes) and tasks.registry.describe (`imgflow lineage`)."""

from tasks.registry.describe import describe_version
from tasks.registry.lineage import LineageError, data_version

__all__ = ["LineageError", "data_version", "describe_version"]
