"""The imagegen-queue HTTP API from Python: ``Client`` (sync) and ``AsyncClient``.

Depends on httpx alone; imports nothing of the service.
"""

from imagegen_client._retry import RetryPolicy
from imagegen_client.aio import AsyncClient
from imagegen_client.client import Client
from imagegen_client.errors import (
    APIError,
    AuthenticationError,
    ChecksumMismatch,
    Conflict,
    ImagegenError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    TransportError,
    WaitTimeout,
)
from imagegen_client.resources import (
    TERMINAL,
    Batch,
    BatchAction,
    Delivery,
    DeliveryAttempt,
    Image,
    Job,
    JobError,
    ManifestImage,
    ManifestLine,
    Page,
    Problem,
    Timings,
)
from imagegen_client.webhooks import verify_webhook

__all__ = [
    "TERMINAL",
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "Batch",
    "BatchAction",
    "ChecksumMismatch",
    "Client",
    "Conflict",
    "Delivery",
    "DeliveryAttempt",
    "Image",
    "ImagegenError",
    "InvalidRequest",
    "Job",
    "JobError",
    "ManifestImage",
    "ManifestLine",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "PermissionDenied",
    "Problem",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "Timings",
    "TransportError",
    "WaitTimeout",
    "verify_webhook",
]
