"""`python -m emulators.erp --host 127.0.0.1 --port 8200`; settings from ERP_EMULATOR_*."""

from emulators.erp.app import create_app
from emulators.erp.config import ErpEmulatorConfig
from emulators.scaffold.run import main

if __name__ == "__main__":
    main("emulators.erp", __doc__, create_app, ErpEmulatorConfig, port=8200)
