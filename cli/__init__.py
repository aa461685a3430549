"""The faces of sopflow that run on a terminal: the CLI and the dev stack."""
