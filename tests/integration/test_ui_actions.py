"""The saga page's actions in a real browser against the platform: Approve and Reject (with a
reason, answered as the UI's own identity), Suspend and Resume, Redrive; and a read-only UI,
which shows none of them and whose endpoints refuse.

Clicks go through the page's scripts and the POST endpoints to the AsyncSagaClient; the page
changes only through its event stream (a button hides, a phase badge changes).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from playwright.async_api import Browser, Dialog, Page

from kubesaga import AsyncSagaClient, StepContext, Worker
from kubesaga.models import API_GROUP, API_VERSION, PLURAL, ApprovalOutcome, SagaPhase, StepPhase
from kubesaga.settings import Settings
from tests.integration.browser import open_tab, saga_url, ui_server
from tests.integration.gateway import gateway_worker, refund_saga
from tests.integration.harness import worker_task
from tests.integration.scripted import scripted_worker, step

WAIT_S = 60
USER = "kubesaga-testenv-admin"
"""Who the platform's kubeconfig (the UI's identity here) authenticates as."""
ACTION_BUTTONS = ("#compensate", "#suspend", "#resume", "#redrive", ".approval button")


def accept_dialogs(page: Page) -> None:
    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)


async def phase(page: Page, value: str) -> None:
    await page.wait_for_selector(f"#phase[data-phase={value}]", timeout=WAIT_S * 1000)


def gate(name: str) -> dict[str, Any]:
    return {"name": name, "approval": {}}


async def post(url: str, action: str, body: Any = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        answer = await http.post(
            url + f"/{action}", json=body, headers={"X-Kubesaga-Action": action}
        )
        return answer.status, await answer.text()


async def test_approve_from_the_page_completes_the_saga_as_the_ui_with_the_reason(
    browser: Browser,
    ui: str,
    running_operator: Settings,
    saga_client: AsyncSagaClient,
    api_client: client.ApiClient,
    namespace: str,
    prefix: str,
) -> None:
    worker, _ = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        await saga_client.start("buy-ui", [step(prefix, "reserve"), gate("manager")])
        async with open_tab(browser, saga_url(ui, namespace, "buy-ui")) as tab:
            await tab.page.wait_for_selector('[data-step="manager"] .approval button.approve')
            assert await tab.page.is_visible("#suspend")  # Running, not suspended

            async with ui_server(api_client, namespace, read_only=True) as read_only:
                async with open_tab(browser, saga_url(read_only, namespace, "buy-ui")) as ro:
                    await ro.page.wait_for_selector('[data-step="manager"]')
                    for selector in ACTION_BUTTONS:
                        assert not await ro.page.is_visible(selector), selector
                api = f"{read_only}/api/sagas/{namespace}/buy-ui"
                for action, body in [
                    ("approve", {"step": "manager"}),
                    ("reject", {"step": "manager"}),
                    ("suspend", None),
                    ("resume", None),
                    ("redrive", None),
                ]:
                    status, text = await post(api, action, body)
                    assert (status, "read-only" in text) == (403, True), action
            async with aiohttp.ClientSession() as http:
                url = f"{ui}/api/sagas/{namespace}/buy-ui/approve"
                cross_site = await http.post(url, json={"step": "manager"})
                assert cross_site.status == 403  # a cross-site form cannot set the header

            await tab.page.fill('[data-step="manager"] input.reason', "under budget")
            await tab.page.click('[data-step="manager"] button.approve')
            await phase(tab.page, "Completed")
            await tab.page.wait_for_selector(".approval", state="detached")
            assert not await tab.page.is_visible("#suspend")
    saga = await saga_client.get("buy-ui")
    assert saga.phase is SagaPhase.COMPLETED and saga.status is not None
    approval = saga.status.step("manager").approval
    assert approval is not None and approval.outcome is ApprovalOutcome.APPROVED
    assert (approval.by, approval.reason) == (USER, "under budget")


async def test_a_reason_being_typed_keeps_its_text_focus_and_caret_through_an_update(
    browser: Browser,
    ui: str,
    running_operator: Settings,
    saga_client: AsyncSagaClient,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    """Every change of the saga redraws the page: the reason input must be the same element
    afterwards, still focused, with the caret where it was (typing goes on where it stopped)."""
    await saga_client.start("typing-ui", [gate("manager")])
    async with open_tab(browser, saga_url(ui, namespace, "typing-ui")) as tab:
        reason = tab.page.locator('[data-step="manager"] input.reason')
        await reason.click()
        await reason.press_sequentially("under budget")
        for _ in "get":
            await reason.press("ArrowLeft")
        await tab.page.evaluate("document.activeElement.dataset.mark = 'typed-here'")
        objects: Any = client.CustomObjectsApi(api_client)  # _content_type: run time only
        await objects.patch_namespaced_custom_object(
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            "typing-ui",
            {"metadata": {"annotations": {"redraw": "now"}}},
            _content_type="application/merge-patch+json",
        )
        await tab.page.wait_for_selector("#yaml:has-text('redraw: now')", state="attached")
        assert await tab.page.evaluate("document.activeElement.dataset.mark") == "typed-here"
        await tab.page.keyboard.type(" not")
        assert await reason.input_value() == "under bud notget"
        await tab.page.click('[data-step="manager"] button.approve')
        await phase(tab.page, "Completed")
    saga = await saga_client.get("typing-ui")
    approval = saga.status.step("manager").approval if saga.status else None
    assert approval is not None and approval.reason == "under bud notget"


async def test_reject_from_the_page_compensates_and_a_late_answer_is_refused(
    browser: Browser,
    ui: str,
    running_operator: Settings,
    saga_client: AsyncSagaClient,
    namespace: str,
    prefix: str,
) -> None:
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        await saga_client.start("deny-ui", [step(prefix, "reserve"), gate("manager")])
        async with open_tab(browser, saga_url(ui, namespace, "deny-ui")) as tab:
            await tab.page.fill('[data-step="manager"] input.reason', "too expensive")
            await tab.page.click('[data-step="manager"] button.reject')
            await phase(tab.page, "Compensated")
            assert await tab.page.query_selector(".approval") is None
            assert not await tab.page.is_visible("#redrive")  # Compensated: nothing to redrive
    saga = await saga_client.get("deny-ui")
    assert saga.status is not None
    approval = saga.status.step("manager").approval
    assert approval is not None and approval.outcome is ApprovalOutcome.REJECTED
    assert (approval.by, approval.reason) == (USER, "too expensive")
    assert saga.status.step("reserve").phase is StepPhase.COMPENSATED
    assert ledger.steps("undo", "deny-ui") == ["reserve"]
    status, text = await post(f"{ui}/api/sagas/{namespace}/deny-ui", "approve", {"step": "manager"})
    assert status == 409 and "already" in text, text
    status, text = await post(f"{ui}/api/sagas/{namespace}/deny-ui", "approve", {"reason": 1})
    assert status == 400, text
    status, text = await post(f"{ui}/api/sagas/{namespace}/deny-ui", "compensate")
    assert status == 200, text  # as the client: no refusal; the operator ignores it, logged
    assert (await saga_client.get("deny-ui")).spec.compensate


async def test_suspend_then_resume_from_the_page_finishes_the_saga(
    browser: Browser,
    ui: str,
    running_operator: Settings,
    saga_client: AsyncSagaClient,
    namespace: str,
    prefix: str,
) -> None:
    release = asyncio.Event()
    worker = Worker(f"{prefix}-hold")

    @worker.step(f"{prefix}.hold")
    async def hold(ctx: StepContext) -> dict[str, Any]:
        await release.wait()
        return {"held": True}

    steps = [{"name": n, "action": f"{prefix}.hold"} for n in ("a", "b")]
    async with worker_task(worker, running_operator):
        await saga_client.start("pause-ui", steps)
        async with open_tab(browser, saga_url(ui, namespace, "pause-ui")) as tab:
            accept_dialogs(tab.page)
            await tab.page.click("#suspend:visible")
            await phase(tab.page, "Suspended")
            await tab.page.wait_for_selector("#resume:visible")
            assert not await tab.page.is_visible("#suspend")
            release.set()  # a finishes and is recorded; b is not dispatched while suspended
            await tab.page.wait_for_selector('#dag g.node[data-step="a"][data-phase=Succeeded]')
            assert (await saga_client.get("pause-ui")).status.step("b").phase is StepPhase.PENDING
            await tab.page.click("#resume:visible")
            await phase(tab.page, "Completed")
            assert not await tab.page.is_visible("#resume")
    assert not (await saga_client.get("pause-ui")).spec.suspend


async def test_redrive_is_offered_only_on_a_redrivable_failed_saga_and_works(
    browser: Browser,
    ui: str,
    running_operator: Settings,
    saga_client: AsyncSagaClient,
    namespace: str,
    prefix: str,
) -> None:
    worker, ledger, gateway = gateway_worker(prefix)
    async with worker_task(worker, running_operator):
        failed = await (await saga_client.start("refund-ui", refund_saga(prefix))).wait(WAIT_S)
        assert failed.status is not None and failed.status.reason == "CompensationFailed"
        async with open_tab(browser, saga_url(ui, namespace, "refund-ui")) as tab:
            accept_dialogs(tab.page)
            assert await tab.page.is_visible("#redrive")
            gateway.down = False
            await tab.page.click("#redrive")
            await phase(tab.page, "Compensated")
            await tab.page.wait_for_selector("#redrive", state="hidden")
    assert ledger.steps("undo", "refund-ui") == ["payment", "order"]
    status, text = await post(f"{ui}/api/sagas/{namespace}/refund-ui", "redrive")
    assert status == 409 and "Compensated" in text, text
