"""`gridbot parse` and `gridbot train`: the webhook's understanding, in bulk, from the shell."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TextIO

from bot.config import DEMO_GRID_FILE, Settings
from handlers.classify import Classifier, KeywordTable, Model, read_history, train
from handlers.places import GridIndex
from handlers.understand import understand
from storage.grids import read_grid_file


class TrainError(Exception):
    """A history file or model that cannot be used; one line for the user."""


def run_parse(
    settings: Settings,
    *,
    categories: Path | None,
    model: Path | None,
    grid: Path | None,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
) -> int:
    """One JSON object out for every line in: plain text, or JSON with `text` and optional `lat`/`lon`.
    A line that cannot be read gets {"error": …} and the run goes on."""
    model_file = model or settings.model_file
    classifier = Classifier(
        KeywordTable.load(categories or settings.categories_file), Model.load(model_file) if model_file else None
    )
    grids = GridIndex.from_file(read_grid_file(grid or settings.grid_file or DEMO_GRID_FILE))
    for line in stdin:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        try:
            text, lat, lon = _read_line(line)
            result = understand(text, classifier=classifier, grids=grids, lat=lat, lon=lon).as_json()
        except (ValueError, TypeError) as exc:
            result = {"error": str(exc)[:200]}
        stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    return 0


def _read_line(line: str) -> tuple[str, float | None, float | None]:
    if not line.lstrip().startswith("{"):
        return line, None, None
    data = json.loads(line)
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise ValueError("a JSON line needs a text field")
    lat, lon = data.get("lat"), data.get("lon")
    return data["text"], float(lat) if lat is not None else None, float(lon) if lon is not None else None


def run_train(settings: Settings, *, history: Path, out: Path, categories: Path | None, with_corrections: bool) -> str:
    table = KeywordTable.load(categories or settings.categories_file)
    try:
        examples = read_history(history)
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        message = str(exc)
        raise TrainError(message if message.startswith(str(history)) else f"{history}: {message}") from exc
    if with_corrections:
        examples += asyncio.run(_corrections(settings))
    try:
        model = train(examples, table=table)
    except ValueError as exc:
        raise TrainError(f"{history}: {exc}") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    counts: dict[str, int] = {}
    for _, category in examples:
        counts[category] = counts.get(category, 0) + 1
    summary = "、".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"trained on {len(examples)} examples ({summary}); model written to {out}"


async def _corrections(settings: Settings) -> list[tuple[str, str]]:
    from sqlmodel import select

    from storage.db import create_engine, session_factory, transaction
    from storage.models import LabelledExample

    engine = create_engine(settings.database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            rows = (await session.exec(select(LabelledExample))).all()
    finally:
        await engine.dispose()
    return [(r.text, r.category) for r in rows]
