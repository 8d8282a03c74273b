"""Deleting a finished saga once ``ttlSecondsAfterFinished`` has passed."""

from __future__ import annotations

import logging

from kubesaga.operator.ports import Sagas
from kubesaga.store import Conflict, NotFound, SagaObject

log = logging.getLogger("kubesaga.operator")

TTL_RETRY_SECONDS = 5.0


async def delete_expired(store: Sagas, obj: SagaObject) -> bool:
    """Delete this incarnation (uid precondition); True once there is nothing left to do.

    Only "gone already" (NotFound) and "a newer saga of that name" (the uid precondition's
    Conflict) end it as well as a deletion does; any other error means "try again later", since
    giving up would leave the saga behind for good.
    """
    try:
        await store.delete(obj.namespace, obj.name, uid=obj.uid)
        log.info("%s/%s: deleted after ttlSecondsAfterFinished", obj.namespace, obj.name)
    except (NotFound, Conflict):
        pass
    except Exception as error:
        log.warning(
            "%s/%s: deleting after ttlSecondsAfterFinished failed (%s); retrying in %.0fs",
            obj.namespace,
            obj.name,
            error,
            TTL_RETRY_SECONDS,
        )
        return False
    return True
