"""The worker: activities, channel adapters and start-up wiring (all the I/O lives here)."""
