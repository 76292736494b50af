"""`python -m emulators.fal --host 127.0.0.1 --port 8788`; settings from FAL_EMULATOR_*."""

from emulators.fal.app import create_app
from emulators.fal.config import EmulatorConfig
from emulators.scaffold.run import main

if __name__ == "__main__":
    main("emulators.fal", __doc__, create_app, EmulatorConfig, port=8788, tls=True)
