"""Churn-risk thresholds (kept apart so the rules can be imported without the models)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChurnRules:
    medium: int = 40
    high: int = 70
    hysteresis: int = 10
