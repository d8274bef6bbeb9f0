"""The configurable rules of the domain (a projection of the settings)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from streams.domain.churn_rules import ChurnRules
from streams.domain.followups import FollowUpRules
from streams.domain.interests import InterestRules


@dataclass(frozen=True, slots=True)
class Rules:
    currency: str
    fx_rates: Mapping[str, Decimal]
    default_margin: Decimal
    ticket_cost: Decimal
    dedup_window: timedelta
    orphan_ttl: timedelta
    max_parked: int  # events parked per customer
    max_parked_bytes: int  # their original bytes together
    churn: ChurnRules = field(default_factory=ChurnRules)
    follow_ups: FollowUpRules = field(default_factory=FollowUpRules)
    interests: InterestRules = field(default_factory=InterestRules)
