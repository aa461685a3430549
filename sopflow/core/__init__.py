"""The journey core: a pure, serialisable state machine stepped by events and a clock.

No Temporal, no I/O: the simulator and the durable workflow run the same functions.
"""
