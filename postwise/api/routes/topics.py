"""``/api/topics``: the workspace's preference-center topics (docs/delivery.md).

A topic is a key (what a list send's ``topic`` and a contact's opt-outs name) and a
display name (what the preference center shows). Renaming keeps the key; deleting a
topic keeps contacts' stored opt-outs, so adding the key again restores their choices.

Conventions (keys, errors): docs/api.md.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from postwise.api.dependencies import scoped_session
from postwise.api.schemas import COMMON_PROBLEMS, problem_responses
from postwise.delivery import preferences
from postwise.workspaces.scopes import Scope

router = APIRouter(prefix="/api/topics", tags=["sending"], responses=COMMON_PROBLEMS)
# Topics shape what is sent: the send scope governs them, like templates.
# scope="function": commit before the response is sent (see routes/contacts.py).
SendSession = Annotated[Session, Depends(scoped_session(Scope.SEND), scope="function")]
TopicKey = Annotated[str, Path(min_length=1, max_length=64, description="The topic's key.")]


class TopicIn(BaseModel):
    key: str = Field(min_length=1, max_length=64, description="a-z, 0-9, '_' and '-'.")
    name: str = Field(min_length=1, max_length=200, description="Shown in the preference center.")


class TopicPatch(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class TopicOut(BaseModel):
    key: str
    name: str


class TopicList(BaseModel):
    data: list[TopicOut]
    next_cursor: str | None = Field(default=None, description="Always null: one page.")


def _out(topic: tuple[str, str]) -> TopicOut:
    return TopicOut(key=topic[0], name=topic[1])


@router.get("", response_model=TopicList, summary="The workspace's topics")
def list_topics(session: SendSession) -> TopicList:
    topics = preferences.workspace_topics(session)
    return TopicList(data=[_out(t) for t in sorted(topics.items())])


@router.post(
    "",
    response_model=TopicOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a topic",
    responses=problem_responses(400, 409),
)
def create_topic(session: SendSession, body: TopicIn) -> TopicOut:
    return _out(preferences.create_topic(session, body.key, body.name))


@router.get(
    "/{topic_key}", response_model=TopicOut, summary="One topic", responses=problem_responses(404)
)
def get_topic(session: SendSession, topic_key: TopicKey) -> TopicOut:
    return _out(preferences.get_topic(session, topic_key))


@router.patch(
    "/{topic_key}",
    response_model=TopicOut,
    summary="Rename a topic",
    description="The key stays: messages and contacts' opt-outs name the key.",
    responses=problem_responses(400, 404),
)
def rename_topic(session: SendSession, topic_key: TopicKey, body: TopicPatch) -> TopicOut:
    return _out(preferences.rename_topic(session, topic_key, body.name))


@router.delete(
    "/{topic_key}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a topic",
    description="Contacts' opt-outs stay stored; new sends naming the key get 400 unknown_topic.",
    responses=problem_responses(404),
)
def delete_topic(session: SendSession, topic_key: TopicKey) -> Response:
    preferences.delete_topic(session, topic_key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
