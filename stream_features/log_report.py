"""What reading an event log found, in a form a user can act on.

``eta produce replay``, ``eta features training-set`` and ``eta features batch`` read a log
line by line (``event_log.iter_log``). A ``LogReport`` watches those lines: it counts the
rejected ones by reason and the data-quality findings by rule, for the summary, and writes
every rejected line and every finding to a JSONL file, one object per line:

- ``{"line": 12, "kind": "rejected", "field": "created_at", "reason": "...", "raw": "..."}``
  (``raw``: the line as written, cut at 1,000 characters);
- ``{"line": 40, "kind": "finding", "rule": "busy_above_onshift", "field": "busy_dashers",
  "reason": "...", "type": "MarketSupplySnapshot", "event_id": "..."}`` (the event was kept).

The file is rewritten on each run, even when nothing was found, so it never describes an
older one. ``default_rejects_path`` puts it in the data directory.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

from stream_features.contract import event_id
from stream_features.event_log import LogLine

__all__ = ["LogReport", "default_rejects_path"]

_RAW_CHARS = 1000


def default_rejects_path(data_dir: Path, log: Path, command: str) -> Path:
    """Where a command's rejects file goes unless ``--rejects`` says otherwise.

    >>> default_rejects_path(Path(".eta"), Path("exports/history.jsonl.gz"), "replay")
    PosixPath('.eta/rejects/history.jsonl.gz.replay.jsonl')
    """
    return data_dir / "rejects" / f"{log.name}.{command}.jsonl"


class LogReport:
    """Counts by rejection reason and by finding rule, and the rejects file, for one read.

    Use it as a context manager (it opens and closes the file) and hand it every line
    (``add``); ``path`` None counts without writing.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lines = 0
        self.rejected = 0
        self.lines_with_findings = 0
        self.by_reason: Counter[str] = Counter()
        self.by_rule: Counter[str] = Counter()
        self._out: IO[bytes] | None = None

    def __enter__(self) -> LogReport:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = self.path.open("wb")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    @property
    def findings(self) -> int:
        return sum(self.by_rule.values())

    def _write(self, record: dict[str, Any]) -> None:
        if self._out is not None:
            self._out.write(orjson.dumps(record) + b"\n")

    def add(self, line: LogLine) -> None:
        """Count ``line`` and write what is wrong with it, if anything."""
        self.lines += 1
        if line.event is None:
            error = line.error
            reason = "rejected" if error is None else error.reason
            field = None if error is None else error.field
            self.rejected += 1
            self.by_reason[f"{field}: {reason}" if field else reason] += 1
            raw = line.raw[: _RAW_CHARS * 4].decode("utf-8", "replace")[:_RAW_CHARS]
            self._write(
                {
                    "line": line.line_no,
                    "kind": "rejected",
                    "field": field,
                    "reason": reason,
                    "raw": raw,
                }
            )
            return
        if not line.findings:
            return
        self.lines_with_findings += 1
        which = event_id(line.event)
        for finding in line.findings:
            self.by_rule[finding.rule] += 1
            self._write(
                {
                    "line": line.line_no,
                    "kind": "finding",
                    "rule": finding.rule,
                    "field": finding.field,
                    "reason": finding.reason,
                    "type": line.event.type,
                    "event_id": which,
                }
            )

    def summary(self, max_reasons: int = 20) -> list[str]:
        """The report as lines of text: counts by reason and by rule, and where the file is.

        >>> report = LogReport(None)
        >>> report.summary()
        ['no line rejected, no data-quality finding']
        """
        out: list[str] = []
        if self.rejected:
            out.append(f"{self.rejected:,} line(s) rejected, by reason:")
            for reason, n in self.by_reason.most_common(max_reasons):
                out.append(f"  {n:>9,}  {reason}")
            if len(self.by_reason) > max_reasons:
                left = len(self.by_reason) - max_reasons
                out.append(f"  … and {left:,} more reason(s): see the file")
        if self.findings:
            out.append(
                f"{self.findings:,} data-quality finding(s) on {self.lines_with_findings:,} "
                "line(s), kept, by rule:"
            )
            for rule, n in self.by_rule.most_common():
                out.append(f"  {n:>9,}  {rule}")
        if not out:
            out.append("no line rejected, no data-quality finding")
        if self.path is not None:
            out.append(f"every rejected line and finding (JSONL): {self.path}")
        return out
