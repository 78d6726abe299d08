"""The producer's side of the contract: the Pydantic models of
../shared/reference/kafka-event-driven-reference.md §2, as a Python service publishes them.

`TaskEvent` is the reference's model, word for word. The reference names `ReminderEvent` in its
registry (`"reminder.due": ReminderEvent`) without spelling it out; the model below is the body
the reminders topic carries (see example-todo/src/events.rs, `ReminderDue`), written in the
reference's style.

`regenerate.sh` exports each model's `model_json_schema()` next to this file; the Rust event
types declare those files with `#[event(contract = "...")]` and fail to compile when they drift.
"""

from datetime import datetime
from typing import Literal, Optional

from pydantic import BaseModel


class TaskEvent(BaseModel):
    event_id: str
    event_type: Literal["task.created", "task.updated", "task.completed", "task.deleted"]
    event_version: str = "1.0"
    task_id: int
    user_id: str  # Required
    timestamp: datetime
    payload: dict


class ReminderEvent(BaseModel):
    event_id: str
    event_type: Literal["reminder.due"]
    event_version: str = "1.0"
    task_id: int
    user_id: str  # Required
    title: str
    due_at: Optional[datetime] = None
    remind_at: datetime
    timestamp: datetime


# The file each model's JSON Schema is exported to.
SCHEMAS = {
    "task-event.schema.json": TaskEvent,
    "reminder-event.schema.json": ReminderEvent,
}
