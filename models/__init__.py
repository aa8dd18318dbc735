"""SQLAlchemy models: the job table, stored images and the job event log."""

from models.base import Base
from models.event import JobEvent
from models.image import JobImage
from models.job import ACTIVE_STATUSES, STATUSES, Job

__all__ = ["ACTIVE_STATUSES", "STATUSES", "Base", "Job", "JobEvent", "JobImage"]
