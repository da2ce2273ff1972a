"""``/api/imports`` (CSV upload of contacts) and ``/api/exports/contacts.csv``.

An upload of up to ``SYNC_IMPORT_MAX_BYTES`` is imported during the request (201, with
the counts); a bigger one is kept under ``POSTWISE_DATA_DIR/imports`` and imported by a
worker as the job ``contacts.import`` (202; poll ``GET /api/imports/{id}``). Either way
rejected rows are fetched from ``/api/imports/{id}/report``. The whole request body is
still capped by ``POSTWISE_MAX_REQUEST_BYTES`` (``api/limits.py``); the CLI has no cap.
Rules for files and rows: ``postwise/contacts/importer.py``.
"""

from __future__ import annotations

import secrets
import shutil
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Depends, File, Form, Path, Query, Response, UploadFile, status
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field

from postwise.api.dependencies import get_db, get_settings, require
from postwise.api.schemas import COMMON_PROBLEMS, MAX_ID, problem_responses
from postwise.contacts import import_runs
from postwise.contacts.exporter import ExportFilter, prepare_export
from postwise.contacts.fields import CONTACT_STATUSES
from postwise.contacts.importer import ImportOptions, parse_mapping
from postwise.core.errors import NotFound, ValidationFailed
from postwise.core.settings import Settings
from postwise.storage.database import Database
from postwise.workspaces.actions import Principal
from postwise.workspaces.scopes import Scope

router = APIRouter(tags=["imports and exports"], responses=COMMON_PROBLEMS)

SYNC_IMPORT_MAX_BYTES = 2 * 1024 * 1024
COPY_CHUNK = 1024 * 1024

Writer = Annotated[Principal, Depends(require(Scope.CONTACTS_WRITE))]
Reader = Annotated[Principal, Depends(require(Scope.CONTACTS_READ))]
Db = Annotated[Database, Depends(get_db)]
CSV: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {}}}}
ImportId = Annotated[int, Path(ge=1, le=MAX_ID, description="The import's id.")]


class ImportCounts(BaseModel):
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    ignored_columns: list[str] = Field(default_factory=list)


class ImportOut(BaseModel):
    id: int
    status: str = Field(description="queued, running, done or failed.")
    filename: str
    options: dict[str, Any]
    counts: ImportCounts
    bytes_total: int
    bytes_read: int
    report_url: str | None = Field(
        description="The rejected rows as CSV (line, email, reasons, original cells); "
        "null when no row was rejected."
    )
    error: str | None = Field(description="Why a failed import stopped.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, document: dict[str, Any]) -> ImportOut:
        return cls(
            **{k: v for k, v in document.items() if k not in ("has_report", "source", "counts")},
            counts=ImportCounts(**document["counts"]),
            report_url=f"/api/imports/{document['id']}/report" if document["has_report"] else None,
        )


ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"model": ImportOut, "description": "Accepted: it runs in the background"}
}


def _uploads(settings: Settings) -> FilePath:
    directory = settings.data_dir / "imports"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _size(upload: BinaryIO) -> int:
    upload.seek(0, 2)
    size = upload.tell()
    upload.seek(0)
    return size


def _document(db: Database, workspace_id: int, run_id: int) -> dict[str, Any]:
    with db.tenant(workspace_id) as session:
        return import_runs.run_document(import_runs.get_run(session, run_id))


@router.post(
    "/api/imports",
    response_model=ImportOut,
    status_code=status.HTTP_201_CREATED,
    summary="Import contacts from a CSV file",
    description="Multipart upload: `file`, and optionally `list`, `map` (repeat: "
    "`COLUMN=FIELD`), `consent_text`, `encoding`, `delimiter`. Small files are imported "
    "at once (201, counts included); bigger ones in the background (202, poll the "
    "import). Importing the same file again changes nothing.",
    responses=ACCEPTED | problem_responses(400, 404, 413),
)
def create_import(
    caller: Writer,
    db: Db,
    settings: Annotated[Settings, Depends(get_settings)],
    response: Response,
    file: Annotated[UploadFile, File(description="The CSV file.")],
    list_name: Annotated[
        str | None, Form(alias="list", max_length=200, description="List to subscribe to.")
    ] = None,
    mapping: Annotated[
        list[str] | None, Form(alias="map", description="COLUMN=FIELD; repeat the field.")
    ] = None,
    mapping_brackets: Annotated[
        list[str] | None, Form(alias="map[]", description="The same as `map`.")
    ] = None,
    consent_text: Annotated[str | None, Form(max_length=5000)] = None,
    encoding: Annotated[str, Form(pattern="^(auto|utf-8|latin-1)$")] = "auto",
    delimiter: Annotated[str, Form(max_length=5)] = "auto",
    background: Annotated[
        bool | None, Form(description="Force (true) or forbid (false) a background import.")
    ] = None,
) -> ImportOut:
    options = ImportOptions(
        list_name=list_name,
        mapping=parse_mapping([*(mapping or []), *(mapping_brackets or [])]),
        encoding=encoding,
        delimiter=delimiter,
        consent_text=consent_text,
    )
    upload = file.file
    size = _size(upload)
    filename = file.filename or "upload.csv"
    later = background if background is not None else size > SYNC_IMPORT_MAX_BYTES
    workspace_id = caller.workspace_id
    if later:
        stored = _uploads(settings) / (
            f"workspace-{workspace_id}-upload-{secrets.token_hex(8)}.csv"
        )
        with stored.open("wb") as target:
            shutil.copyfileobj(upload, target, COPY_CHUNK)
        with db.tenant(workspace_id) as session:
            run = import_runs.create_run(
                session,
                source="api",
                filename=filename,
                options=options,
                file_path=str(stored),
                bytes_total=size,
            )
            import_runs.enqueue_run(session, run)
            run_id = run.id
        response.status_code = status.HTTP_202_ACCEPTED
    else:
        with db.tenant(workspace_id) as session:
            run = import_runs.create_run(
                session, source="api", filename=filename, options=options, bytes_total=size
            )
            run_id = run.id
        import_runs.execute(
            db.engine,
            workspace_id,
            run_id,
            source=upload,
            report_path=import_runs.report_path_for(_uploads(settings), workspace_id, run_id),
        )
    response.headers["Location"] = f"/api/imports/{run_id}"
    return ImportOut.of(_document(db, workspace_id, run_id))


@router.get(
    "/api/imports/{import_id}",
    response_model=ImportOut,
    summary="An import's status and counts",
    responses=problem_responses(404),
)
def get_import(caller: Writer, db: Db, import_id: ImportId) -> ImportOut:
    return ImportOut.of(_document(db, caller.workspace_id, import_id))


@router.get(
    "/api/imports/{import_id}/report",
    summary="The rejected rows of an import, as CSV",
    response_class=FileResponse,
    responses=CSV | problem_responses(404),
)
def get_import_report(caller: Writer, db: Db, import_id: ImportId) -> FileResponse:
    with db.tenant(caller.workspace_id) as session:
        run = import_runs.get_run(session, import_id)
        path = run.report_path
    if path is None or not FilePath(path).is_file():
        raise NotFound(f"import {import_id} has no rejected rows", code="no_report")
    return FileResponse(
        path,
        media_type="text/csv; charset=utf-8",
        filename=f"import-{import_id}-rejected.csv",
    )


@router.get(
    "/api/exports/contacts.csv",
    summary="Export contacts as CSV",
    description="Streamed; cells a spreadsheet would run as a formula get a leading "
    "apostrophe. The columns are the import's field names, so the file imports back.",
    response_class=StreamingResponse,
    responses=CSV | problem_responses(400, 404),
)
def export_contacts(
    caller: Reader,
    db: Db,
    list_name: Annotated[
        str | None, Query(alias="list", max_length=200, description="Only this list's members.")
    ] = None,
    contact_status: Annotated[
        str | None,
        Query(alias="status", description=f"One of: {', '.join(CONTACT_STATUSES)}."),
    ] = None,
) -> StreamingResponse:
    if contact_status is not None and contact_status not in CONTACT_STATUSES:
        raise ValidationFailed(
            f"status must be one of {', '.join(CONTACT_STATUSES)}",
            code="invalid_status",
            field="status",
        )
    export = prepare_export(
        db.engine, caller.workspace_id, ExportFilter(list_name=list_name, status=contact_status)
    )
    return StreamingResponse(
        export.csv_chunks(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="contacts.csv"'},
    )
