"""The GPTProto provider: HTTP client, wire schemas and the mapping of failures to errors."""

from worker.provider.client import ProviderClient, ResponseHook
from worker.provider.errors_map import envelope_error, error_from_response, error_from_transport
from worker.provider.failures import failure_error
from worker.provider.wire import Prediction, PredictionState, parse_prediction

__all__ = [
    "Prediction",
    "PredictionState",
    "ProviderClient",
    "ResponseHook",
    "envelope_error",
    "error_from_response",
    "error_from_transport",
    "failure_error",
    "parse_prediction",
]
