"""A FastAPI app module written with ``from __future__ import annotations`` (every annotation
a string): the decorator and the dependency must not turn anything into a query parameter."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from pydantic import BaseModel

from aioresilience import FixedWindowCounter
from aioresilience.integrations.asgi import install
from aioresilience.integrations.fastapi import limit, protect


class Item(BaseModel):
    name: str
    price: float


decorated = FixedWindowCounter(max_requests=2, window_seconds=60.0, name="decorated")
depended = FixedWindowCounter(max_requests=2, window_seconds=60.0, name="depended")

app = FastAPI()
install(app)


@app.post("/items/{item_id}")
@limit(decorated, per_route=True)
async def create(item_id: int, item: Item) -> dict[str, object]:
    return {"id": item_id, "name": item.name}


@app.get("/things/{thing_id}", dependencies=[Depends(protect(depended))])
async def read(thing_id: int, q: str | None = None) -> dict[str, object]:
    return {"id": thing_id, "q": q}
