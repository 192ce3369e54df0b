"""ResultStore: one folder per task, written as each task finishes.

Layout under the store root:

    <root>/<recipe_name>/<task slug>/result.json        TaskResult.to_dict()
    <root>/<recipe_name>/<task slug>/<other files>      raw benchmark JSON and table,
                                                        deploy spec, engine log, ...

The task slug is the variant, plus the sweep point when there is one. Saving over an older
result first moves the older files into `<task folder>/history/<its finish time>/`, so a
forced or nightly re-run never loses what an earlier run measured. Every file is written
to a temporary name and renamed into place, so a run killed mid-write never leaves a
half-written result, and `result.json` is written last: a folder without it holds no result.
Text is redacted of registered secrets before it is written.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from deplodock_dagster.bench.types import TaskResult
from deplodock_dagster.secrets import redact, redact_obj

RESULT_FILE = "result.json"
HISTORY_DIR = "history"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]+")


def task_slug(task_id: str) -> str:
    """Folder name for a task id `recipe/variant[/sweep]` (the recipe part is a parent dir)."""
    parts = task_id.split("/", 1)
    rest = parts[1] if len(parts) > 1 else parts[0]
    return _UNSAFE.sub("_", rest.replace("/", "__")).strip("._") or "task"


class ResultStore:
    """Task results on disk under `root` (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def task_dir(self, task_id: str) -> Path:
        """The folder that holds (or will hold) the result of `task_id`."""
        recipe_name = _UNSAFE.sub("_", task_id.split("/", 1)[0]) or "recipe"
        return self.root / recipe_name / task_slug(task_id)

    def has(self, task_id: str) -> bool:
        """True if a result for `task_id` is stored (whatever its outcome)."""
        return (self.task_dir(task_id) / RESULT_FILE).is_file()

    def has_success(self, task_id: str) -> bool:
        """True if a succeeded result for `task_id` is stored."""
        result = self.load(task_id)
        return result is not None and result.succeeded

    def save(self, result: TaskResult, files: dict[str, str | bytes] | None = None) -> Path:
        """Store `result` and its raw `files` (name -> content); return the task folder.

        Raw files go first and `result.json` last, each atomically.
        """
        folder = self.task_dir(result.task_id)
        folder.mkdir(parents=True, exist_ok=True)
        self._archive_previous(folder)
        for name, content in (files or {}).items():
            if "/" in name or name in ("", ".", "..", RESULT_FILE):
                raise ValueError(f"bad result file name {name!r}")
            _atomic_write(folder / name, content)
        data = redact_obj(result.to_dict())
        _atomic_write(folder / RESULT_FILE, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return folder

    def history(self, task_id: str) -> list[TaskResult]:
        """Earlier results of `task_id` that a newer save replaced, oldest first."""
        base = self.task_dir(task_id) / HISTORY_DIR
        return [
            TaskResult.from_dict(json.loads(path.read_text()))
            for path in sorted(base.glob(f"*/{RESULT_FILE}"))
        ]

    def _archive_previous(self, folder: Path) -> None:
        current = folder / RESULT_FILE
        if not current.is_file():
            return
        try:
            stamp = json.loads(current.read_text()).get("finished_at") or ""
        except ValueError:
            stamp = ""
        stamp = _UNSAFE.sub("_", stamp) or f"{current.stat().st_mtime:.0f}"
        target = folder / HISTORY_DIR / stamp
        suffix = 1
        while target.exists():
            suffix += 1
            target = folder / HISTORY_DIR / f"{stamp}-{suffix}"
        target.mkdir(parents=True)
        # result.json first: a crash mid-way leaves the folder without a current result,
        # never with a current result next to another run's raw files.
        os.replace(current, target / RESULT_FILE)
        for path in folder.iterdir():
            if path.is_file() and not path.name.startswith("."):
                os.replace(path, target / path.name)

    def load(self, task_id: str) -> TaskResult | None:
        """The stored result of `task_id`, or None."""
        path = self.task_dir(task_id) / RESULT_FILE
        if not path.is_file():
            return None
        return TaskResult.from_dict(json.loads(path.read_text()))

    def all_results(self, recipe: str | None = None) -> list[TaskResult]:
        """Every stored result, optionally of one recipe, in a stable order."""
        base = self.root / recipe if recipe else self.root
        pattern = f"*/{RESULT_FILE}" if recipe else f"*/*/{RESULT_FILE}"
        return [
            TaskResult.from_dict(json.loads(path.read_text()))
            for path in sorted(base.glob(pattern))
        ]


def _atomic_write(path: Path, content: str | bytes) -> None:
    data = redact(content).encode() if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
