"""``/api/segments``: saved segments, validation, preview, members, refresh and history.

Definitions are parsed by ``segments/definition.py``; a definition that does not parse
is a 422 whose ``field`` is the path of the offending node. Writes go through
``segments/store.py``; membership reads and the refresh through
``segments/membership.py``. See docs/segments.md and docs/api.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from postwise.api.dependencies import get_db, require, scoped_session
from postwise.api.schemas import COMMON_PROBLEMS, Cursor, Limit, ObjectId, problem_responses
from postwise.api.schemas.segments import (
    DefinitionIn,
    HistoryOut,
    MemberOut,
    MemberPage,
    PreviewOut,
    RefreshOut,
    SegmentIn,
    SegmentList,
    SegmentOut,
    SegmentPatch,
    StayOut,
    ValidationOut,
)
from postwise.contacts.actions import get_contact
from postwise.contacts.exporter import ExportFilter, prepare_export
from postwise.segments import catalog, membership, store
from postwise.segments.preview import preview
from postwise.segments.render import describe
from postwise.storage.database import Database
from postwise.storage.tables import Segment
from postwise.workspaces.actions import Principal
from postwise.workspaces.scopes import Scope

router = APIRouter(tags=["segments"], responses=COMMON_PROBLEMS)
PREFIX = "/api/segments"

Reader = Annotated[Session, Depends(scoped_session(Scope.SEGMENTS_READ), scope="function")]
Writer = Annotated[Session, Depends(scoped_session(Scope.SEGMENTS_WRITE), scope="function")]
ReadCaller = Annotated[Principal, Depends(require(Scope.SEGMENTS_READ))]
Db = Annotated[Database, Depends(get_db)]
INVALID = problem_responses(400, 409)
CSV: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {}}}}


def _out_of(session: Session, segment: Segment) -> SegmentOut:
    session.flush()
    session.refresh(segment)
    data = {c: getattr(segment, c) for c in SegmentOut.model_fields if c != "summary"}
    return SegmentOut(**data, summary=describe(catalog.loaded(session, segment).definition))


@router.get(PREFIX, response_model=SegmentList, summary="All segments, by name")
def list_segments(session: Reader) -> SegmentList:
    return SegmentList(data=[_out_of(session, s) for s in store.list_segments(session)])


@router.post(
    PREFIX,
    response_model=SegmentOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a segment",
    description="The definition is validated first (422 naming the node's path); the "
    "membership is then computed by a background refresh (`segments.refresh`).",
    responses=INVALID,
)
def create_segment(session: Writer, body: SegmentIn) -> SegmentOut:
    segment = store.create_segment(
        session,
        store.SegmentInput(
            name=body.name,
            description=body.description,
            definition=body.definition,
            status=body.status,
        ),
    )
    return _out_of(session, segment)


@router.post(
    f"{PREFIX}/validate",
    response_model=ValidationOut,
    summary="Check a definition without saving it",
    description="200 with its one-line summary, or 422 whose `field` is the path of the "
    "offending node (e.g. `all[2].any[0].count`).",
)
def validate_segment(session: Reader, body: DefinitionIn) -> ValidationOut:
    definition = store.validate(session, body.definition)
    return ValidationOut(valid=True, summary=describe(definition))


@router.post(
    f"{PREFIX}/preview",
    response_model=PreviewOut,
    summary="Count a definition's members now, with a sample of 20 emails",
)
def preview_segment(session: Reader, body: DefinitionIn) -> PreviewOut:
    result = preview(session, body.definition)
    return PreviewOut(count=result.count, sample=result.sample, seconds=round(result.seconds, 6))


@router.get(
    f"{PREFIX}/{{segment_id}}",
    response_model=SegmentOut,
    summary="One segment",
    responses=problem_responses(404),
)
def get_segment(session: Reader, segment_id: ObjectId) -> SegmentOut:
    return _out_of(session, store.get_segment(session, segment_id))


@router.patch(
    f"{PREFIX}/{{segment_id}}",
    response_model=SegmentOut,
    summary="Change a segment (a new definition: version + 1 and a refresh)",
    responses=problem_responses(400, 404, 409),
)
def update_segment(session: Writer, segment_id: ObjectId, body: SegmentPatch) -> SegmentOut:
    segment = store.update_segment(session, segment_id, body.model_dump(exclude_unset=True))
    return _out_of(session, segment)


@router.delete(
    f"{PREFIX}/{{segment_id}}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a segment and its membership history",
    description="409 `segment_in_use` while another segment's definition references it.",
    responses=problem_responses(404, 409),
)
def delete_segment(session: Writer, segment_id: ObjectId) -> None:
    store.delete_segment(session, segment_id)


@router.get(
    f"{PREFIX}/{{segment_id}}/members",
    response_model=MemberPage,
    summary="Current members, by contact id",
    responses=problem_responses(400, 404),
)
def list_members(
    session: Reader, segment_id: ObjectId, cursor: Cursor = None, limit: Limit = 100
) -> MemberPage:
    store.get_segment(session, segment_id)
    page = membership.members_page(session, segment_id, cursor=cursor, limit=limit)
    return MemberPage(
        data=[MemberOut(**m.__dict__) for m in page.items], next_cursor=page.next_cursor
    )


@router.get(
    f"{PREFIX}/{{segment_id}}/members.csv",
    summary="Export the current members as CSV",
    description="Streamed, with the columns of the contact export (so it imports back).",
    response_class=StreamingResponse,
    responses=CSV | problem_responses(404),
)
def export_members(caller: ReadCaller, db: Db, segment_id: ObjectId) -> StreamingResponse:
    export = prepare_export(db.engine, caller.workspace_id, ExportFilter(segment_id=segment_id))
    return StreamingResponse(
        export.csv_chunks(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="segment-{segment_id}.csv"'},
    )


@router.post(
    f"{PREFIX}/{{segment_id}}/refresh",
    response_model=RefreshOut,
    summary="Recompute the membership now",
    description="Runs in the request: entries and exits are recorded (with their "
    "`segment.entered` / `segment.exited` events) before the answer.",
    responses=problem_responses(404),
)
def refresh_segment(session: Writer, segment_id: ObjectId) -> RefreshOut:
    store.get_segment(session, segment_id)
    result = membership.refresh(session, segment_id)
    return RefreshOut(**{**result.__dict__, "seconds": round(result.seconds, 6)})


@router.get(
    "/api/contacts/{contact_id}/segments",
    response_model=HistoryOut,
    summary="The contact's segment history: current and past stays, newest first",
    responses=problem_responses(404),
)
def contact_history(session: Reader, contact_id: ObjectId) -> HistoryOut:
    get_contact(session, contact_id)
    return HistoryOut(
        data=[
            StayOut(
                segment_id=r.segment_id,
                segment=r.name,
                entered_at=r.entered_at,
                exited_at=r.exited_at,
            )
            for r in membership.history(session, contact_id)
        ]
    )
