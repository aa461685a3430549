"""The data converter of every sopflow client and worker: temporalio's pydantic converter,
its payload converter built once per process.

temporalio builds a new payload converter for every workflow activation (twice: decoding
the activation, encoding the completion), and a new PydanticPayloadConverter builds its
JSON converter and an empty cache of pydantic type adapters each time, so every activation
also built the type adapters of its payloads again: about 5% of a worker's CPU on the
one-event-per-request path (bench/latency.py). The converter holds no state but that
cache, so one instance serves every activation. The payloads are byte for byte those of
temporalio's `pydantic_data_converter` (tests/test_data_converter.py): recorded histories
replay unchanged.
"""

from __future__ import annotations

import threading
from typing import ClassVar

from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter


class SharedPydanticPayloadConverter(PydanticPayloadConverter):
    """PydanticPayloadConverter, one instance per process (its type adapters cached once)."""

    _instance: ClassVar[SharedPydanticPayloadConverter | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __new__(cls) -> SharedPydanticPayloadConverter:
        with cls._lock:
            if cls._instance is None:
                instance = super().__new__(cls)
                PydanticPayloadConverter.__init__(instance)
                cls._instance = instance
            return cls._instance

    def __init__(self) -> None:
        """Initialised once, in __new__: temporalio calls the class for every activation."""


DATA_CONVERTER = DataConverter(payload_converter_class=SharedPydanticPayloadConverter)
