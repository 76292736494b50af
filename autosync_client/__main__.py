from autosync_client.cli import main

main()
