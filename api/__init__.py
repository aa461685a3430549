"""The HTTP API: a thin FastAPI face over a Temporal client and the plan store."""
