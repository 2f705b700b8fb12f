"""What a resident's message says: category, urgency, place, grid, phone — one code path for the
webhook and for `gridbot parse`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from handlers.places import GridIndex, GridRef
from handlers.text import find_phones, find_place_phrase, mask_phone, normalise


class Prediction(Protocol):
    category: str
    confidence: float


class Classifier(Protocol):
    def classify(self, text: str) -> Any: ...

    def is_urgent(self, text: str) -> bool: ...


@dataclass(frozen=True)
class Understanding:
    text: str  # normalised (half-width, simplified)
    category: str
    confidence: float
    urgent: bool
    place: str | None  # the place as the resident described it (a landmark, or a phrase)
    landmark: str | None  # the gazetteer entry it matched, when it did
    grid: GridRef | None
    phone: str | None  # digits, unmasked: stored with the resident, masked in every push

    def as_json(self) -> dict[str, Any]:
        """The `gridbot parse` output line."""
        return {
            "category": self.category,
            "confidence": round(self.confidence, 3),
            "urgent": self.urgent,
            "place": self.place,
            "grid": {"id": self.grid.code, "name": self.grid.name} if self.grid else None,
            "phone": mask_phone(self.phone) if self.phone else None,
        }


def understand(
    text: str, *, classifier: Classifier, grids: GridIndex, lat: float | None = None, lon: float | None = None
) -> Understanding:
    """Read one message. A location pin decides the grid when it falls inside one; the text's place
    is kept as the description either way."""
    clean = normalise(text)
    prediction = classifier.classify(clean)
    match = grids.locate_text(clean)
    phrase = find_place_phrase(clean)
    # The fuller description wins when it contains the landmark: "幸福里小区3号楼东侧" over "幸福里小区".
    fuller = phrase is not None and (match is None or grids.landmark_key(phrase) == grids.landmark_key(match.phrase))
    place = phrase if fuller else (match.phrase if match else None)
    grid = grids.locate_point(lat, lon) if lat is not None and lon is not None else None
    if grid is None and match is not None:
        grid = match.grid
    phones = find_phones(clean)
    return Understanding(
        text=clean,
        category=prediction.category,
        confidence=float(prediction.confidence),
        urgent=classifier.is_urgent(clean),
        place=place,
        landmark=match.phrase if match else None,
        grid=grid,
        phone=phones[0] if phones else None,
    )
