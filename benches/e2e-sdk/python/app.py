"""Trivial Dapr pub/sub subscriber with the Dapr Python SDK's FastAPI extension
(dapr-ext-fastapi): counts deliveries of bench-events; GET /count answers
{"count": N, "first": t0, "last": t1} (unix seconds of the first and latest delivery).
Run: uvicorn app:app --host 127.0.0.1 --port $APP_PORT --workers 1
"""
import time

from dapr.ext.fastapi import DaprApp
from fastapi import Body, FastAPI

app = FastAPI()
dapr_app = DaprApp(app)

state = {"count": 0, "first": 0.0, "last": 0.0}


@dapr_app.subscribe(pubsub="kafka-pubsub", topic="bench-events", route="/events/bench")
async def on_bench(event_data=Body()):
    t = time.time()
    if state["count"] == 0:
        state["first"] = t
    state["count"] += 1
    state["last"] = t


@app.get("/count")
async def count():
    return state
