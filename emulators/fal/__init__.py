"""A fal.ai queue API emulator: `python -m emulators.fal --port 8788` (see `app.py`)."""
