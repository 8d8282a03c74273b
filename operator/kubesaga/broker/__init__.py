"""The aio-pika adapter: topology, confirmed publishing and consuming of protocol messages."""

from kubesaga.broker.connection import Broker, BrokerSettings, DeadLetterHook
from kubesaga.broker.consumer import Disposition, Outcome
from kubesaga.broker.topology import (
    DEAD_LETTER_QUEUE,
    EXCHANGE,
    RESULTS_QUEUE,
    action_queue,
)

__all__ = [
    "DEAD_LETTER_QUEUE",
    "EXCHANGE",
    "RESULTS_QUEUE",
    "Broker",
    "BrokerSettings",
    "DeadLetterHook",
    "Disposition",
    "Outcome",
    "action_queue",
]
