"""Webhook notifications reach a real local HTTP endpoint; an unreachable one is not an error."""

from __future__ import annotations

from tasks.notify import run_payload, send_webhook


def test_webhook_delivers_json_document(webhook_listener: tuple[str, list[dict]]) -> None:
    url, received = webhook_listener
    payload = run_payload("retrain", "calm-fox", "Failed", "train@cnn failed")
    assert send_webhook(url, payload)
    assert received == [payload]
    assert received[0]["state"] == "Failed" and "train@cnn failed" in received[0]["text"]


def test_unreachable_webhook_returns_false_without_raising() -> None:
    assert not send_webhook("http://127.0.0.1:9/nothing-listens", {"x": 1}, attempts=1)
