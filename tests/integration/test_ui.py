"""``kubesaga ui`` in a real browser, against the platform with the operator and workers.

Each test starts the UI for its own namespace in the test's event loop, and opens pages in
headless Chromium (the ``ui`` and ``browser`` fixtures of conftest.py, shared with
test_ui_actions.py; tests/integration/browser.py). What the page shows is read from the DOM the
scripts built: the ``data-*`` attributes and computed colours, not the server's JSON, so a
broken script, a style the CSP blocked or a missing SSE update fails here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from playwright.async_api import Browser, Page

from kubesaga import AsyncSagaClient, PermanentError, StepContext, Worker
from kubesaga.models import SagaPhase, SagaSpec
from kubesaga.settings import Settings
from tests.integration.browser import open_tab, saga_url, ui_server
from tests.integration.examples_kit import ExampleRun, load_manifest
from tests.integration.harness import worker_task

WAIT_S = 60
COLOURS = {  # ui.css: the phase colours a user sees
    "Succeeded": "rgb(67, 160, 71)",
    "Failed": "rgb(229, 57, 53)",
    "Compensated": "rgb(142, 36, 170)",
}
HTML = "<img src=x onerror=window.pwned=1><b id=injected>bold</b>"  # no quotes: JSON keeps it


async def row_phase(page: Page, name: str, phase: str) -> None:
    await page.wait_for_selector(f'tr[data-name="{name}"][data-phase="{phase}"]', timeout=20_000)


async def graph(page: Page) -> dict[str, Any]:
    """Nodes (phase, fill colour) and edges (by kind) of the drawn step graph."""
    result: dict[str, Any] = await page.evaluate(
        """() => ({
        nodes: Object.fromEntries([...document.querySelectorAll('#dag g.node')].map((g) => [
          g.dataset.step,
          {phase: g.dataset.phase, fill: getComputedStyle(g.querySelector('rect')).fill,
           undo: g.querySelector('.undo')?.dataset.undo ?? null}])),
        edges: [...document.querySelectorAll('#dag path.edge')].map((p) =>
          [p.classList.contains('compensation') ? 'compensation' : 'forward',
           p.dataset.source, p.dataset.target]),
      })"""
    )
    return result


def gated_worker(prefix: str, gate: asyncio.Event) -> Worker:
    worker = Worker(f"{prefix}-ui")

    @worker.step(f"{prefix}.wait")
    async def wait(ctx: StepContext) -> dict[str, Any]:
        await gate.wait()
        return {"waited": True}

    @worker.step(f"{prefix}.html")
    async def html(ctx: StepContext) -> dict[str, Any]:
        return {"note": HTML}

    @worker.step(f"{prefix}.fail")
    async def fail(ctx: StepContext) -> None:
        raise PermanentError(f"declined {HTML}", type="Declined")

    @worker.compensation(f"{prefix}.undo")
    async def undo(ctx: StepContext) -> None:
        return None

    return worker


async def test_the_list_follows_a_saga_through_its_phases_without_a_reload(
    browser: Browser, ui: str, running_operator: Settings, saga_client: AsyncSagaClient, prefix: str
) -> None:
    gate = asyncio.Event()
    worker = gated_worker(prefix, gate)
    async with worker_task(worker, running_operator), open_tab(browser, ui + "/") as tab:
        await tab.page.evaluate("window.loadedOnce = true")
        await saga_client.start("live-1", [{"name": "a", "action": f"{prefix}.wait"}])
        await row_phase(tab.page, "live-1", "Running")
        gate.set()
        await row_phase(tab.page, "live-1", "Completed")
        assert await tab.page.inner_text('tr[data-name="live-1"] td.progress') == "1/1"
        assert await tab.page.evaluate("window.loadedOnce") is True  # the same document
        await tab.page.select_option("#f-phase", "Running")  # filters apply to live rows
        await tab.page.wait_for_selector('tr[data-name="live-1"]', state="detached")
        await saga_client.delete("live-1")
        await tab.page.select_option("#f-phase", "")
        await tab.page.wait_for_selector("#count:text('0 of 0')")


@pytest.mark.parametrize("example", ["01-order-saga", "03-parallel", "04-retry-timeout"])
async def test_the_graph_of_an_example_has_its_steps_edges_and_phase_colours(
    browser: Browser, ui: str, run_example: ExampleRun, namespace: str, example: str
) -> None:
    saga, _ = await run_example(example)
    name, spec, _ = load_manifest(example)
    async with open_tab(browser, saga_url(ui, namespace, name)) as tab:
        drawn = await graph(tab.page)
    assert saga.status is not None
    assert set(drawn["nodes"]) == {s.name for s in spec.steps}
    for step in saga.status.steps:
        assert drawn["nodes"][step.name]["phase"] == step.phase.value
        assert drawn["nodes"][step.name]["fill"] == COLOURS[step.phase.value]
    assert sorted(drawn["edges"]) == sorted(
        ["forward", dep, step] for step, deps in spec.dependencies().items() for dep in deps
    )


async def test_the_compensation_path_of_example_02_is_drawn_in_reverse(
    browser: Browser, ui: str, run_example: ExampleRun, namespace: str
) -> None:
    saga, _ = await run_example("02-compensation")
    assert saga.phase is SagaPhase.COMPENSATED
    async with open_tab(browser, saga_url(ui, namespace, saga.name)) as tab:
        drawn = await graph(tab.page)
        events = await tab.page.wait_for_selector("#events td:text('StepCompensated')")
        assert events is not None
    nodes = drawn["nodes"]
    assert {n: v["phase"] for n, v in nodes.items()} == {
        "create_order": "Compensated",
        "reserve_inventory": "Compensated",
        "charge_payment": "Failed",
    }
    assert nodes["charge_payment"]["fill"] == COLOURS["Failed"]
    assert nodes["create_order"]["fill"] == COLOURS["Compensated"]
    compensation = sorted(e[1:] for e in drawn["edges"] if e[0] == "compensation")
    assert compensation == [
        ["charge_payment", "reserve_inventory"],
        ["reserve_inventory", "create_order"],
    ]
    assert (nodes["reserve_inventory"]["undo"], nodes["create_order"]["undo"]) == ("1", "2")


async def test_html_from_the_cluster_is_shown_as_text(
    browser: Browser, ui: str, running_operator: Settings, saga_client: AsyncSagaClient, prefix: str
) -> None:
    gate = asyncio.Event()
    steps: list[dict[str, Any]] = [
        {"name": "render", "action": f"{prefix}.html", "input": {"comment": HTML}},
        {"name": "decline", "action": f"{prefix}.fail"},
    ]
    async with worker_task(gated_worker(prefix, gate), running_operator):
        await saga_client.start("html-1", steps, labels={"team": "a-b"})
        saga = await saga_client.wait("html-1", WAIT_S)
    assert saga.phase is SagaPhase.COMPENSATED
    async with open_tab(browser, ui + "/") as tab:
        await row_phase(tab.page, "html-1", "Compensated")
        reason = await tab.page.get_attribute('tr[data-name="html-1"] td.reason', "title")
        assert reason is not None and HTML in reason
        await tab.page.goto(saga_url(ui, saga.namespace, "html-1"))
        await tab.page.wait_for_selector("body[data-ready=true]")
        await tab.page.wait_for_selector("#events td:text('Declined')")
        output = await tab.page.inner_text('[data-step="render"] .value-output pre')
        assert HTML in output
        assert HTML in await tab.page.inner_text('[data-step="render"] .value-input pre')
        assert HTML in await tab.page.inner_text("#summary")
        assert HTML in (await tab.page.text_content("#yaml") or "")
        assert await tab.page.query_selector("#injected") is None
        assert await tab.page.query_selector("main img") is None
        assert await tab.page.evaluate("window.pwned") is None


async def test_the_compensate_button_undoes_a_completed_saga(
    browser: Browser,
    ui: str,
    running_operator: Settings,
    saga_client: AsyncSagaClient,
    api_client: client.ApiClient,
    namespace: str,
    prefix: str,
) -> None:
    gate = asyncio.Event()
    gate.set()
    step = {"name": "a", "action": f"{prefix}.wait", "compensation": f"{prefix}.undo"}
    async with worker_task(gated_worker(prefix, gate), running_operator):
        await saga_client.start("undo-1", [step])
        assert (await saga_client.wait("undo-1", WAIT_S)).phase is SagaPhase.COMPLETED
        async with open_tab(browser, saga_url(ui, namespace, "undo-1")) as tab:
            tab.page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            await tab.page.click("#compensate:visible")
            await tab.page.wait_for_selector("#action-result[data-ok=true]")
            assert await tab.page.inner_text("#action-result") == "compensation requested"
            await tab.page.wait_for_selector("#phase[data-phase=Compensated]", timeout=20_000)
            await tab.page.wait_for_selector("#compensate", state="hidden")
            node = await graph(tab.page)
            assert node["nodes"]["a"]["phase"] == "Compensated"
    saga = await saga_client.get("undo-1")
    assert saga.spec.compensate and saga.phase is SagaPhase.COMPENSATED

    async with aiohttp.ClientSession() as http:  # the endpoint answers as the client does
        action = {"X-Kubesaga-Action": "compensate"}
        gone = await http.post(f"{ui}/api/sagas/{namespace}/no-such/compensate", headers=action)
        assert gone.status == 404
        assert f"saga {namespace}/no-such not found" in (await gone.json())["error"]

    async with ui_server(api_client, namespace, read_only=True) as read_only:
        async with open_tab(browser, saga_url(read_only, namespace, "undo-1")) as tab:
            assert not await tab.page.is_visible("#compensate")
        async with aiohttp.ClientSession() as http:
            post = f"{read_only}/api/sagas/{namespace}/undo-1/compensate"
            answer = await http.post(post, headers={"X-Kubesaga-Action": "compensate"})
            assert answer.status == 403


async def test_actions_need_the_header_and_the_server_answers_only_to_local_names(
    ui: str, saga_client: AsyncSagaClient, namespace: str, saga_crd: dict[str, Any]
) -> None:
    spec = SagaSpec.model_validate({"steps": [{"name": "a", "action": "x.never"}]})
    await saga_client.create("guarded", spec)
    async with aiohttp.ClientSession() as http:
        post = f"{ui}/api/sagas/{namespace}/guarded/compensate"
        assert (await http.post(post)).status == 403  # a cross-site form cannot set the header
        rebound = await http.get(f"{ui}/", headers={"Host": "evil.example:8080"})
        assert rebound.status == 421
        page = await http.get(f"{ui}/")
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert not (await saga_client.get("guarded")).spec.compensate
