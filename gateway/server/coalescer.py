"""Single submits that arrive together go through the pipeline together.

Each ``POST /v1/messages`` used to be a ``submit_many`` of its own: its own pass through
the consent gate, its own unit in the store's group commit, its own counting. Under load
dozens of them are parsed in one turn of the event loop, so the first one of a tenant
starts a task that, one turn later, hands all of that tenant's waiting submits to
``submit_many`` at once; each request still gets its own result, after the commit that
holds its message (the pipeline answers only then). Per tenant, so one tenant's batch is
never another's: a failure or a slow gate stays with the tenant whose submits met it.
"""

from __future__ import annotations

import asyncio

from gateway.domain import SubmitRequest
from gateway.pipeline import SubmitPipeline, SubmitResult


class SubmitCoalescer:
    """Collects a tenant's concurrent single submits into one ``submit_many``."""

    __slots__ = ("_pipeline", "_runs", "_waiting")

    def __init__(self, pipeline: SubmitPipeline) -> None:
        self._pipeline = pipeline
        self._waiting: dict[str, list[tuple[SubmitRequest, asyncio.Future[SubmitResult]]]] = {}
        self._runs: set[asyncio.Task[None]] = set()

    def submit(self, request: SubmitRequest) -> asyncio.Future[SubmitResult]:
        """The request's result, once the batch it joined has been through the pipeline."""
        tenant = request.tenant.id
        future: asyncio.Future[SubmitResult] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(tenant)
        if waiting is None:
            waiting = self._waiting[tenant] = []
            run = asyncio.create_task(self._submit_waiting(tenant))
            self._runs.add(run)
            run.add_done_callback(self._runs.discard)
        waiting.append((request, future))
        return future

    async def _submit_waiting(self, tenant: str) -> None:
        """Runs one turn after the first submit: everything the tenant queued since goes."""
        batch = self._waiting.pop(tenant)
        try:
            results = await self._pipeline.submit_many([request for request, _ in batch])
        except asyncio.CancelledError:  # the app is closing
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # each request answers it as its own submit would
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # a request whose handler was cancelled is not waiting
                future.set_result(result)
