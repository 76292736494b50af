"""Alerts: incidents found on a schedule, each sent once to every ALERT_WEBHOOK_URLS entry.

- `contracts`: the workflows' activity names, inputs and ids (plain data, sandbox-safe);
- `conditions`: what counts as an incident (queries of the app DB);
- `incidents`: recording them once, opening and resolving conditions that come and go;
- `messages`: the bodies sent (Standard Webhooks JSON, or Slack-compatible JSON).
"""
