"""Fixtures of the rollout scenarios (defined in rollouts.py beside their helpers)."""

from tests.e2e.gateway import gateway, gateway_api  # noqa: F401
from tests.e2e.rollouts import model_store, models, operator  # noqa: F401 - pytest finds fixtures here
