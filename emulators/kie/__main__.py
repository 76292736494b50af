"""`python -m emulators.kie --host 127.0.0.1 --port 8788`; settings from KIE_EMULATOR_*."""

from emulators.kie.app import create_app
from emulators.kie.config import EmulatorConfig
from emulators.scaffold.run import main

if __name__ == "__main__":
    main("emulators.kie", __doc__, create_app, EmulatorConfig, port=8788)
