-- The todo service's schema (SQLite). Times are RFC 3339 text in UTC, as sqlx stores chrono
-- timestamps in SQLite; booleans are 0/1.

CREATE TABLE tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          TEXT    NOT NULL,
    title            TEXT    NOT NULL,
    completed        BOOLEAN NOT NULL DEFAULT 0,
    due_at           TEXT,
    remind_at        TEXT,
    reminder_sent_at TEXT,
    recurrence       TEXT CHECK (recurrence IN ('daily', 'weekly', 'monthly')),
    -- The task this one is the next occurrence of. UNIQUE: completing a recurring task creates
    -- at most one next occurrence, however often its task.completed event is delivered.
    recurs_from      INTEGER UNIQUE,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);
CREATE INDEX tasks_user ON tasks (user_id, id);
CREATE INDEX tasks_reminders_due ON tasks (remind_at) WHERE reminder_sent_at IS NULL;

-- Every task event, recorded once.
CREATE TABLE audit_log (
    event_id    TEXT PRIMARY KEY,
    event_type  TEXT    NOT NULL,
    task_id     INTEGER NOT NULL,
    user_id     TEXT    NOT NULL,
    occurred_at TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL
);
CREATE INDEX audit_log_task ON audit_log (task_id);

-- Reminders delivered to their users, once per reminder.due event.
CREATE TABLE notifications (
    event_id   TEXT PRIMARY KEY,
    task_id    INTEGER NOT NULL,
    user_id    TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);
CREATE INDEX notifications_user ON notifications (user_id);

-- Dead letters from the `dlq` topic: one row per event and handler.
CREATE TABLE dead_letters (
    id                TEXT PRIMARY KEY,
    event_id          TEXT    NOT NULL,
    event_type        TEXT    NOT NULL,
    handler           TEXT,
    reason            TEXT    NOT NULL,
    last_failure_at   TEXT,
    record            TEXT    NOT NULL,
    times_dead_lettered INTEGER NOT NULL DEFAULT 1,
    received_at       TEXT    NOT NULL,
    replayed          BOOLEAN NOT NULL DEFAULT 0,
    replayed_at       TEXT
);
