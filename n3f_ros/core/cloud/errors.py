"""Exceptions raised by the feature-cloud functions (all are ``ValueError`` subclasses)."""
from __future__ import annotations


class CloudError(ValueError):
    """Malformed cloud input: wrong shape or dtype, NaN/inf, mismatched lengths, bad parameter."""


class EmptyCloudError(CloudError):
    """The operation needs at least one point and the cloud is empty."""


class QueryError(CloudError):
    """A query cannot be answered (point far from the cloud, nothing above the threshold, ...).

    ``reason`` is a short code for counting refusals (the message says it in words): ``far``
    (point far from the cloud), ``below_threshold`` (nothing near it is similar enough),
    ``too_large`` (the answer would cover too much of the map), ``not_converged`` (the features do
    not discriminate yet), ``empty_map``, ``outside_image`` / ``no_surface`` (pixel queries),
    ``unanswerable`` (anything else).
    """

    def __init__(self, message: str, reason: str = 'unanswerable'):
        super().__init__(message)
        self.reason = reason
