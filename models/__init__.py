"""SQLAlchemy models: jobs, stored images, the job event log, batches and webhook deliveries."""

from models.base import Base
from models.batch import Batch
from models.event import JobEvent
from models.image import JobImage
from models.job import ACTIVE_STATUSES, STATUSES, Job
from models.webhook import DELIVERY_STATUSES, WebhookAttempt, WebhookDelivery

__all__ = ["ACTIVE_STATUSES", "DELIVERY_STATUSES", "STATUSES", "Base", "Batch", "Job",
           "JobEvent", "JobImage", "WebhookAttempt", "WebhookDelivery"]
