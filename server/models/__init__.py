"""The data model: Postgres is the truth for everything Greenlight knows."""

from server.models.artifact import Artifact
from server.models.base import Base
from server.models.build import Build, BuildState, Job, JobState, Step, StepState
from server.models.cache import BranchGeneration
from server.models.credential import RepositoryCredential
from server.models.delivery import WebhookDelivery
from server.models.deployment import DeployCheck, Deployment, DeploymentState, DeploymentTrigger, Environment
from server.models.github import GitHubRedelivery, GitHubStatusReport
from server.models.liveness import ServiceLiveness
from server.models.log import LogChunk
from server.models.notification import NotificationDelivery, NotificationRule
from server.models.repository import Repository
from server.models.runner import ApiToken, Runner, RunnerState, TokenKind
from server.models.schedule import FiringOutcome, Schedule, ScheduleFiring
from server.models.secret import Secret
from server.models.test_report import ReportedSuite, ReportedTest

__all__ = [
    "ApiToken",
    "Artifact",
    "Base",
    "BranchGeneration",
    "Build",
    "BuildState",
    "DeployCheck",
    "Deployment",
    "DeploymentState",
    "DeploymentTrigger",
    "Environment",
    "FiringOutcome",
    "GitHubRedelivery",
    "GitHubStatusReport",
    "Job",
    "JobState",
    "LogChunk",
    "NotificationDelivery",
    "NotificationRule",
    "ReportedSuite",
    "ReportedTest",
    "Repository",
    "RepositoryCredential",
    "Runner",
    "RunnerState",
    "Schedule",
    "ScheduleFiring",
    "Secret",
    "ServiceLiveness",
    "Step",
    "StepState",
    "TokenKind",
    "WebhookDelivery",
]
