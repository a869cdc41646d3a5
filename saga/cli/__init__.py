"""The `saga` command line: run the processes, manage data, inspect sagas."""
