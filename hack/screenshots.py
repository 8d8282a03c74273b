"""Photograph ``kubesaga ui``: the saga list and example 03's step graph (hack/screenshots.sh).

Serves the UI in this process for one namespace (KUBECONFIG from the environment) and opens
it in headless Chromium, as the browser tests do; ``--clear`` only deletes the namespace's
Sagas, so the next demo run is all the pictures show.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
from pathlib import Path

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from playwright.async_api import async_playwright

from kubesaga.models import API_GROUP, API_VERSION, PLURAL
from kubesaga.store import make_api_client
from kubesaga.ui import make_app, serving

EXAMPLE_03_LABEL = "kubesaga.io/example=03-parallel"


async def clear(api: client.ApiClient, namespace: str) -> None:
    with contextlib.suppress(ApiException):  # no namespace yet: nothing to clear
        await client.CustomObjectsApi(api).delete_collection_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL
        )


async def photograph(api: client.ApiClient, namespace: str, output: Path) -> None:
    listing = await client.CustomObjectsApi(api).list_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, PLURAL, label_selector=EXAMPLE_03_LABEL
    )
    names = [item["metadata"]["name"] for item in listing["items"]]
    if len(names) != 1:
        raise SystemExit(f"expected one saga of example 03 in {namespace}, found {names}")
    chromium = os.environ.get("KUBESAGA_CHROMIUM") or shutil.which("chromium") or "chromium"
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with (
        serving(make_app(api, namespace), "127.0.0.1", 0) as port,
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(executable_path=chromium, args=args)
        page = await browser.new_page(viewport={"width": 1100, "height": 330})
        await page.goto(f"http://127.0.0.1:{port}/")
        await page.wait_for_selector("body[data-ready=true]")
        await page.screenshot(path=str(output / "ui-list.png"))
        await page.set_viewport_size({"width": 1100, "height": 640})
        await page.goto(f"http://127.0.0.1:{port}/saga/{namespace}/{names[0]}")
        await page.wait_for_selector("#dag")
        await page.screenshot(path=str(output / "ui-graph-03.png"))
        await browser.close()
    for name in ("ui-list.png", "ui-graph-03.png"):
        print(f"wrote {output / name}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--output", type=Path, default=Path("docs/images"))
    parser.add_argument("--clear", action="store_true", help="only delete the namespace's Sagas")
    options = parser.parse_args()
    api = await make_api_client()
    try:
        if options.clear:
            await clear(api, options.namespace)
        else:
            options.output.mkdir(parents=True, exist_ok=True)
            await photograph(api, options.namespace, options.output)
    finally:
        await api.close()


if __name__ == "__main__":
    asyncio.run(main())
