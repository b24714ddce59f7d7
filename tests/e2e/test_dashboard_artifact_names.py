"""Long artifact names on the run page wrap inside the Artifacts table's Name column
instead of running into the Kind column (headless Chromium at 1400 px, a real server)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.browser import chromium
from tests.e2e.test_browser_login import TIMEOUT_MS, startup_link
from tests.e2e.test_dashboard import Start, store_artifact
from tests.e2e.test_sdk import discovery_key

pytestmark = pytest.mark.e2e

NAMES = (
    "histograms/events.out.tfevents.1796506499.vm.jsonl",  # the newcomer's (report, 16)
    "checkpoints/" + "epoch-0042_step-000123456_val-loss-0.0123456789" * 3 + ".safetensors",
)

# Per row: the right edge of the name's text, of its cell, and the left edge of the Kind
# cell beside it.
EDGES = """() => [...document.querySelectorAll("#artifacts tbody tr")].map((row) => {
  const name = row.querySelector("th"), kind = row.querySelector("td");
  const text = document.createRange();
  text.selectNodeContents(name);
  return [name.textContent, text.getBoundingClientRect().right,
          name.getBoundingClientRect().right, kind.getBoundingClientRect().left];
})"""


def test_long_artifact_names_wrap_within_their_column(server_factory: Start) -> None:
    server = server_factory()
    headers = {"Authorization": f"Bearer {discovery_key(server)}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        assert client.post("/api/v1/projects", json={"name": "p"}).status_code == 201
        run = client.post("/api/v1/projects/p/runs", json={"name": "long names"}).json()
        for name in NAMES:
            store_artifact(client, run["id"], name, b"{}\n", content_type="application/json")
    with chromium() as browser:
        page, _ = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(startup_link(server)[1])
        page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
        page.goto(f"{server.url}/runs/{run['id']}")
        page.locator("#artifacts tbody tr").nth(len(NAMES) - 1).wait_for(timeout=TIMEOUT_MS)
        rows = page.evaluate(EDGES)
        assert sorted(name for name, *_ in rows) == sorted(NAMES)
        for name, text_right, cell_right, kind_left in rows:
            assert text_right <= cell_right + 0.5, (name, text_right, cell_right)
            assert cell_right <= kind_left + 0.5, (name, cell_right, kind_left)
        assert page.evaluate("document.documentElement.scrollWidth") <= 1400  # no page scroll
