"""What every emulator shares, so that each emulator package keeps only its protocol.

- `app.build_app` + `EmulatorApp`: the FastAPI app (lifespan, error answers, call counting,
  fault middleware, control routes); `run.main`: the `python -m emulators.<name>` runner.
- `emulator.EmulatorBase`: the state object's config, stats, fault engine and task set.
- `faults`: the common switches (429 and 5xx as counters and rates, dropped connections,
  latency; webhook drop, duplicate, delay and reorder) and `FaultEngine.admit`, which a
  protocol's routes call with the kind of call they serve.
- `webhooks.WebhookSender`: delivery, retries and the webhook faults.
- `control`: `/_emulator/health|stats|faults|reset|jobs`; `jobs`: provider jobs per app job.
- `media`: output files made on the fly (PNG, MP4, tar); `tasks.TaskSet`; `settings`.

A new emulator: `config.py` (a `ProviderSettings` subclass with its env prefix), its wire
models (a `WebhookFaults` subclass naming its call kinds in `errors_on`), its state (an
`EmulatorBase` subclass), its routes (calling `emulator.faults.admit(request, kind, ...)`),
`app.py` (an `EmulatorApp` and `create_app`) and a three-line `__main__.py`.
"""
