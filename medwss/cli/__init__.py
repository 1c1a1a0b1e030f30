"""The `medwss` command line: one module per command group."""
