"""Run notifications: POST a small JSON document to a webhook (Slack-, Teams- or any HTTP
endpoint that accepts JSON). A notification that cannot be delivered is logged, never raised:
telling people about a run must not change the run's outcome."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

logger = logging.getLogger("imgflow.notify")


def send_webhook(
    url: str, payload: dict[str, Any], attempts: int = 3, timeout: float = 10.0
) -> bool:
    """POST payload as JSON; retries with back-off; returns whether the endpoint accepted it."""
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if 200 <= response.status < 300:
                    return True
                logger.warning("webhook %s answered HTTP %s", url, response.status)
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            logger.warning("webhook %s attempt %d/%d failed: %s", url, attempt, attempts, error)
        if attempt < attempts:
            time.sleep(2 ** (attempt - 1))
    return False


def run_payload(flow_name: str, run_name: str, state: str, message: str, **details: Any) -> dict:
    """The document sent for a finished flow run; `text` makes it render in Slack as is."""
    return {
        "text": f"[imgflow] {flow_name} run '{run_name}' {state}: {message}",
        "flow": flow_name,
        "run": run_name,
        "state": state,
        "message": message,
        **details,
    }
