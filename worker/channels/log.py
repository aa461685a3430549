"""The log channel: one JSON line per delivery, appended to a file under .sopflow/."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from sopflow.core.state import Delivery
from sopflow.files import append_line


class LogChannel:
    """Stands in for channels without an adapter yet (wecom.*), recording their channel."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    async def deliver(self, delivery: Delivery) -> str | None:
        line = json.dumps(
            {
                "delivered_at": datetime.now(UTC).isoformat(),
                **delivery.model_dump(mode="json"),
            },
            ensure_ascii=False,
        )
        async with self._lock:
            await asyncio.to_thread(self._append, line)
        return str(self.path)

    def _append(self, line: str) -> None:
        append_line(self.path, line)
