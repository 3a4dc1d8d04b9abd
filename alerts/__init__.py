"""Alert delivery: receivers, notifier process, acknowledgement and escalation, HTTP API."""
