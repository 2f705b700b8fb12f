"""The category keyword table (事项分类): the first guess at what a report is about, and urgency."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Category:
    name: str
    keywords: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Catalog:
    categories: tuple[Category, ...]
    default: str
    urgent_keywords: tuple[str, ...]

    @classmethod
    def load(cls, path: Path) -> Catalog:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        categories = []
        for item in data.get("categories", []):
            words = []
            for kw in item.get("keywords") or []:
                if isinstance(kw, str):
                    words.append((kw, 1.0))
                else:
                    words.append((str(kw["word"]), float(kw.get("weight", 1))))
            categories.append(Category(str(item["name"]), tuple(words)))
        return cls(
            tuple(categories),
            str(data.get("default", "其他")),
            tuple(str(w) for w in data.get("urgent_keywords", [])),
        )

    def classify(self, text: str) -> tuple[str, float]:
        """The best-scoring category and its score; the default (其他) with 0 when nothing matched."""
        best, best_score = self.default, 0.0
        for cat in self.categories:
            score = sum(weight for word, weight in cat.keywords if word in text)
            if score > best_score:
                best, best_score = cat.name, score
        return best, best_score

    def is_urgent(self, text: str) -> bool:
        return any(word in text for word in self.urgent_keywords)
