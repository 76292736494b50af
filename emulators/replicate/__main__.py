"""`python -m emulators.replicate --host 127.0.0.1 --port 8787`; settings from REPLICATE_EMULATOR_*."""

from emulators.replicate.app import create_app
from emulators.replicate.config import EmulatorConfig
from emulators.scaffold.run import main

if __name__ == "__main__":
    main("emulators.replicate", __doc__, create_app, EmulatorConfig, port=8787)
