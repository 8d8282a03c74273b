"""Size limits that keep a Saga object far below etcd's ~1.5 MiB object limit.

Worst case with these figures: spec <= 128 KiB, outputs 50 x 8 KiB = 400 KiB, errors and
bookkeeping about 3 KiB a step = 150 KiB, compensations kept by redrives 50 x 5 x 0.6 KiB =
150 KiB; under 850 KiB in all.
"""

import re

MAX_STEPS = 50
MAX_NAME_LENGTH = 63
MAX_ACTION_LENGTH = 200
MAX_SPEC_BYTES = 128 * 1024
MAX_OUTPUT_BYTES = 8 * 1024
MAX_ERROR_MESSAGE_CHARS = 1024
MAX_ERROR_TYPE_CHARS = 200
MAX_STATUS_MESSAGE_CHARS = 4096
MAX_ATTEMPTS = 100
MAX_REDRIVES = 5
"""Redrives of one saga (spec.redrive); each keeps the compensations it replaced in status."""
MAX_HISTORY_ERROR_CHARS = 256
"""An error kept in a step's compensationHistory is cut to this (the latest keeps 1024)."""
MAX_RETRY_AFTER_SECONDS = 86400.0
"""The longest delay a handler may ask for (a retry policy's maxBackoffSeconds bounds it too)."""
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
MAX_APPROVER_LENGTH = 253
"""A Kubernetes user name (``system:serviceaccount:<ns>:<name>`` fits)."""
MAX_APPROVAL_REASON_CHARS = 1024

STEP_NAME_PATTERN = r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$"
"""Lowercase letters, digits, ``-`` and ``_``; starts and ends with a letter or digit."""

ACTION_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"
"""Action names become queue names (``kubesaga.action.<action>``): keep them AMQP-safe."""


def check_action(action: str) -> str:
    """``action`` if it is a valid action name, else ``ValueError`` saying what is allowed.

    Here rather than in the broker adapter so that registering a handler checks the name
    without importing the AMQP client.
    """
    if len(action) > MAX_ACTION_LENGTH or not re.fullmatch(ACTION_PATTERN, action):
        raise ValueError(
            f"invalid action name {action!r}: expected {ACTION_PATTERN}, "
            f"at most {MAX_ACTION_LENGTH} characters"
        )
    return action
