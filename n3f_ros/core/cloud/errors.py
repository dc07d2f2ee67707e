"""Exceptions raised by the feature-cloud functions (all are ``ValueError`` subclasses)."""
from __future__ import annotations


class CloudError(ValueError):
    """Malformed cloud input: wrong shape or dtype, NaN/inf, mismatched lengths, bad parameter."""


class EmptyCloudError(CloudError):
    """The operation needs at least one point and the cloud is empty."""


class QueryError(CloudError):
    """A query cannot be answered (point far from the cloud, nothing above the threshold, ...)."""
