"""Import runs: the ``imports`` row behind ``GET /api/imports/{id}``, and the background task.

A run is created ``queued`` (API) or ``running`` (CLI); the importer saves its counts and
bytes read in the transaction of every batch, so progress survives with the batches it
describes, and the final counts are written when the import ends.

Big uploads run as the job ``contacts.import``. The handler writes nothing through the
job's own session (on SQLite that session's transaction would hold the write lock for
the whole import) and commits batch by batch instead, which is safe to repeat because
imports are idempotent: a retried or taken-over job just runs again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

import structlog
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from postwise.contacts.importer import (
    ImportOptions,
    ImportProgress,
    ImportResult,
    import_contacts,
)
from postwise.core.clock import utcnow
from postwise.core.errors import NotFound, PostwiseError
from postwise.jobs import queue
from postwise.jobs.registry import JobContext, PermanentFailure, task
from postwise.storage import tenancy
from postwise.storage.tables import ImportRun

TASK = "contacts.import"
STATUSES = ("queued", "running", "done", "failed")
log = structlog.get_logger(__name__)


def options_document(options: ImportOptions) -> dict[str, Any]:
    document = asdict(options)
    document["mapping"] = dict(options.mapping)
    return document


def options_from(document: Mapping[str, Any]) -> ImportOptions:
    return ImportOptions(
        list_name=document.get("list_name"),
        mapping=dict(document.get("mapping") or {}),
        encoding=document.get("encoding") or "auto",
        delimiter=document.get("delimiter") or "auto",
        consent_text=document.get("consent_text"),
        batch_size=document.get("batch_size"),
    )


def create_run(
    session: Session,
    *,
    source: str,
    filename: str,
    options: ImportOptions,
    file_path: str | None = None,
    bytes_total: int = 0,
    status: str = "queued",
) -> ImportRun:
    run = ImportRun(
        status=status,
        source=source,
        filename=filename[:255],
        options=options_document(options),
        counts={},
        bytes_total=bytes_total,
        file_path=file_path,
        started_at=utcnow() if status == "running" else None,
    )
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: int) -> ImportRun:
    run = session.get(ImportRun, run_id)
    if run is None:
        raise NotFound(f"import {run_id} does not exist in this workspace")
    return run


def enqueue_run(session: Session, run: ImportRun) -> int:
    """Queue the run as a job in the caller's transaction (one job per run)."""
    return queue.enqueue(
        session, TASK, {"import_id": run.id}, queue="default", dedupe_key=f"{TASK}:{run.id}"
    )


def _set(engine: Engine, workspace_id: int, run_id: int, **values: Any) -> None:
    with Session(engine) as session, session.begin():
        tenancy.bind(session, workspace_id)
        table = ImportRun.__table__
        session.execute(
            update(ImportRun)
            .where(table.c.workspace_id == workspace_id, table.c.id == run_id)
            .values(**values)
        )


def progress_hook(run_id: int) -> Any:
    """An ``on_batch`` hook that saves counts in the batch's own transaction."""

    def save(session: Session, progress: ImportProgress) -> None:
        workspace_id = tenancy.workspace_of(session)
        table = ImportRun.__table__
        session.execute(
            update(ImportRun)
            .where(table.c.workspace_id == workspace_id, table.c.id == run_id)
            .values(counts=progress.counts(), bytes_read=progress.bytes_read)
        )

    return save


def report_path_for(directory: Path, workspace_id: int, run_id: int) -> Path:
    return directory / f"workspace-{workspace_id}-import-{run_id}.rejected.csv"


def execute(
    engine: Engine,
    workspace_id: int,
    run_id: int,
    *,
    source: str | Path | BinaryIO | None = None,
    report_path: str | Path | None = None,
    on_batch: Any = None,
) -> ImportResult:
    """Run an import and keep its row current; unusable input marks it failed and raises.

    ``source`` (a path or an open binary file) defaults to the run's ``file_path``, an
    upload kept for a job.
    """
    with Session(engine) as session:
        tenancy.bind(session, workspace_id)
        run = get_run(session, run_id)
        options = options_from(run.options)
        path = source if source is not None else run.file_path
        session.rollback()
    if path is None:
        raise NotFound(f"import {run_id} has no file to read", field="file")
    _set(engine, workspace_id, run_id, status="running", started_at=utcnow(), error=None)
    save = progress_hook(run_id)

    def hook(session: Session, progress: ImportProgress) -> None:
        save(session, progress)
        if on_batch is not None:
            on_batch(session, progress)

    try:
        result = import_contacts(
            engine, workspace_id, path, options, report_path=report_path, on_batch=hook
        )
    except PostwiseError as exc:
        _set(engine, workspace_id, run_id, status="failed", error=str(exc), finished_at=utcnow())
        raise
    except Exception as exc:
        _set(
            engine,
            workspace_id,
            run_id,
            status="failed",
            error=f"the import stopped ({type(exc).__name__}); batches written so far are "
            "kept, and running it again resumes it",
            finished_at=utcnow(),
        )
        raise
    _set(
        engine,
        workspace_id,
        run_id,
        status="done",
        counts={**result.counts(), "ignored_columns": result.ignored_columns},
        bytes_read=result.bytes_read,
        report_path=result.report_path,
        finished_at=utcnow(),
    )
    if result.counts().get("created") or result.counts().get("updated"):
        from postwise.segments.store import refresh_all  # docs/segments.md#real-time

        with Session(engine) as session, session.begin():
            tenancy.bind(session, workspace_id)
            refresh_all(session, cause=f"import:{run_id}")
    return result


def run_document(run: ImportRun) -> dict[str, Any]:
    """The run as the API shows it (paths on the server stay private)."""
    return {
        "id": run.id,
        "status": run.status,
        "source": run.source,
        "filename": run.filename,
        "options": {k: v for k, v in run.options.items() if k != "batch_size"},
        "counts": run.counts,
        "bytes_total": run.bytes_total,
        "bytes_read": run.bytes_read,
        "has_report": run.report_path is not None,
        "error": run.error,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


@task(TASK)
def run_import_job(ctx: JobContext) -> None:
    """The background import. Unusable input will not get better: dead-letter at once."""
    if ctx.workspace_id is None:
        raise PermanentFailure("an import job needs a workspace")
    bind: Any = ctx.session.get_bind()  # an Engine; the session itself is left untouched
    engine: Engine = getattr(bind, "engine", bind)
    run_id = int(ctx.payload["import_id"])
    with Session(engine) as session:
        tenancy.bind(session, ctx.workspace_id)
        run = get_run(session, run_id)
        upload = Path(run.file_path) if run.file_path else None
        report = upload.with_suffix(".rejected.csv") if upload else None
        session.rollback()
    try:
        execute(engine, ctx.workspace_id, run_id, report_path=report)
    except PostwiseError as exc:
        _discard(upload)
        raise PermanentFailure(str(exc)) from exc
    _discard(upload)


def _discard(upload: Path | None) -> None:
    """Uploads are kept only until their import is settled; reports stay."""
    if upload is not None:
        try:
            upload.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("import upload not removed", path=str(upload), error=str(exc))
