"""`python -m emulators.pull_client --host 127.0.0.1 --port 3001`; settings from PULL_CLIENT_EMULATOR_*."""

from emulators.pull_client.app import create_app
from emulators.pull_client.config import PullClientEmulatorConfig
from emulators.scaffold.run import main

if __name__ == "__main__":
    main("emulators.pull_client", __doc__, create_app, PullClientEmulatorConfig, port=3001)
