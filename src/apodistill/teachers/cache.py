"""SQLite cache of teacher answers: a paid-for answer is stored once and never asked again.

Why SQLite in WAL mode: each answer is committed the moment it arrives, a reader never
blocks the writer, and a process killed with SIGKILL leaves every committed row intact
(the next run reads the WAL and goes on). The key is :func:`record_key`: a hash of the
teacher, model, backend, template text, rendered prompt, image bytes, record identity and
the backend's answer-changing params, so changing any of them asks again and nothing else does.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from apodistill.teachers.backends import Request, Result

SCHEMA_VERSION = 1
_COLUMNS = (
    "key", "teacher", "model", "backend", "task", "prompt_mode", "template", "study_id", "prior_study_id",
    "text", "raw", "parsed", "parse_error", "status", "reason", "latency_s", "prompt_tokens",
    "completion_tokens", "attempts", "created_at",
)
_DDL = f"""
CREATE TABLE IF NOT EXISTS answers (
  key TEXT PRIMARY KEY, teacher TEXT NOT NULL, model TEXT NOT NULL, backend TEXT NOT NULL,
  task TEXT NOT NULL, prompt_mode TEXT NOT NULL, template TEXT NOT NULL, study_id TEXT NOT NULL,
  prior_study_id TEXT, text TEXT NOT NULL, raw TEXT NOT NULL, parsed TEXT, parse_error TEXT,
  status TEXT NOT NULL CHECK (status IN ('ok', 'refused', 'error')), reason TEXT,
  latency_s REAL NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
  attempts INTEGER NOT NULL, created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_teacher ON answers (teacher);
CREATE TABLE IF NOT EXISTS image_digests (
  path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, digest TEXT NOT NULL
);
PRAGMA user_version = {SCHEMA_VERSION};
"""


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def record_key(req: Request, model: str, backend: str, template_text: str, image_digests: list[str],
               answer_params: dict[str, Any]) -> str:
    """The cache key: what was asked of whom (see the module docstring)."""
    payload = {
        "v": SCHEMA_VERSION, "teacher": req.teacher, "model": model, "backend": backend,
        "task": req.task, "prompt_mode": req.prompt_mode, "template": req.template,
        "template_text": template_text, "prompt": req.prompt, "images": image_digests,
        "study_id": req.study_id, "prior_study_id": req.prior_study_id, "params": answer_params,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class TeacherCache:
    """One SQLite file; one writer (the stage), any number of readers."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")  # durable against process kill; fsync at checkpoints
        self.conn.executescript(_DDL)
        self._digests: dict[str, str] = {}

    def stored_keys(self, keys: Iterable[str], include_errors: bool) -> set[str]:
        """Keys already answered (errors count as answered only when not retrying them)."""
        keys = list(keys)
        found: set[str] = set()
        cond = "" if include_errors else " AND status != 'error'"
        for i in range(0, len(keys), 900):
            chunk = keys[i : i + 900]
            q = f"SELECT key FROM answers WHERE key IN ({','.join('?' * len(chunk))}){cond}"
            found.update(k for (k,) in self.conn.execute(q, chunk))
        return found

    def put(self, req: Request, model: str, backend: str, result: Result,
            parsed: dict[str, Any] | None, parse_error: str | None, commit: bool = True) -> None:
        """Store one answer (replacing an earlier error for the same key); commit at once unless told."""
        row = (
            req.key, req.teacher, model, backend, req.task, req.prompt_mode, req.template, req.study_id,
            req.prior_study_id, result.text, result.raw, json.dumps(parsed) if parsed is not None else None,
            parse_error, result.status, result.reason, float(result.latency_s), int(result.prompt_tokens),
            int(result.completion_tokens), int(result.attempts), time.time(),
        )
        self.conn.execute(f"INSERT OR REPLACE INTO answers VALUES ({','.join('?' * len(row))})", row)
        if commit:
            self.conn.commit()

    def image_digest(self, path: str | Path) -> str:
        """sha256 of an image file, remembered by (path, size, mtime) so reruns skip re-reading."""
        path = str(path)
        if path in self._digests:
            return self._digests[path]
        st = os.stat(path)
        row = self.conn.execute(
            "SELECT digest FROM image_digests WHERE path = ? AND size = ? AND mtime_ns = ?",
            (str(path), st.st_size, st.st_mtime_ns),
        ).fetchone()
        digest = row[0] if row else file_digest(path)
        self._digests[path] = digest
        if row:
            return digest
        self.conn.execute("INSERT OR REPLACE INTO image_digests VALUES (?, ?, ?, ?)",
                          (str(path), st.st_size, st.st_mtime_ns, digest))
        return digest

    def commit(self) -> None:
        self.conn.commit()

    def rows(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Stored rows by key (missing keys are absent)."""
        keys = list(keys)
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 900):
            chunk = keys[i : i + 900]
            q = f"SELECT {','.join(_COLUMNS)} FROM answers WHERE key IN ({','.join('?' * len(chunk))})"
            for values in self.conn.execute(q, chunk):
                row = dict(zip(_COLUMNS, values))
                out[row["key"]] = row
        return out

    def latencies(self, teacher: str, model: str, limit: int = 200) -> list[float]:
        """The latest answer latencies (ok or refused) of a teacher's model, oldest first."""
        q = ("SELECT latency_s FROM answers WHERE teacher = ? AND model = ? AND status != 'error' "
             "ORDER BY created_at DESC LIMIT ?")
        return [float(x) for (x,) in self.conn.execute(q, (teacher, model, limit))][::-1]

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self.commit()
        self.conn.close()
