"""SQLAlchemy models: jobs, stored images, the job event log, batches, webhook deliveries,
the fleet-wide control state, revoked dashboard sessions and failed authentications, and
tenants with their keys and spend."""

from models.access import AuthFailure, RevokedSession
from models.base import Base
from models.batch import Batch
from models.event import JobEvent
from models.fleet import BUCKETS, FleetControl
from models.image import JobImage
from models.job import ACTIVE_STATUSES, STATUSES, Job
from models.tenant import ApiKey, Charge, SpendCounter, Tenant
from models.webhook import DELIVERY_STATUSES, WebhookAttempt, WebhookDelivery

__all__ = [
    "ACTIVE_STATUSES",
    "BUCKETS",
    "DELIVERY_STATUSES",
    "STATUSES",
    "ApiKey",
    "AuthFailure",
    "Base",
    "Batch",
    "Charge",
    "FleetControl",
    "Job",
    "JobEvent",
    "JobImage",
    "RevokedSession",
    "SpendCounter",
    "Tenant",
    "WebhookAttempt",
    "WebhookDelivery",
]
