"""Channel adapters: one small interface, one module per touchpoint."""
