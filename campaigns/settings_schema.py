"""A campaign's settings: stored as JSON, validated here, defaults filled in on read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from django.core.exceptions import ValidationError

TONES = ("neutral", "warm", "formal")
DEFAULT_CLOSING = (
    "Thank you for taking the time to share your thoughts. Your answers help the team "
    "decide what to change."
)
MAX_REMINDERS = 3


@dataclass(frozen=True)
class CampaignSettings:
    max_follow_ups: int = 4
    tone: str = "neutral"
    language: str = "English"
    anonymous: bool = False
    closing_message: str = DEFAULT_CLOSING
    reminder_days: tuple[int, ...] = field(default=(3, 7))

    @classmethod
    def from_json(cls, data: dict | None) -> CampaignSettings:
        """Stored settings with defaults for anything missing (older rows, new options)."""
        data = dict(data or {})
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if "reminder_days" in known:
            known["reminder_days"] = tuple(known["reminder_days"])
        return cls(**known)

    @classmethod
    def validated(cls, **values) -> CampaignSettings:
        errors: dict[str, str] = {}
        current = cls(**{k: v for k, v in values.items() if v is not None})
        if not isinstance(current.max_follow_ups, int) or not 1 <= current.max_follow_ups <= 10:
            errors["max_follow_ups"] = "Choose between 1 and 10 follow-up questions."
        if current.tone not in TONES:
            errors["tone"] = f"Tone must be one of: {', '.join(TONES)}."
        if not current.language.strip() or len(current.language) > 40:
            errors["language"] = "Name the language the interviewer should use."
        if len(current.closing_message) > 2000:
            errors["closing_message"] = "Keep the closing message under 2,000 characters."
        days = current.reminder_days
        if len(days) > MAX_REMINDERS:
            errors["reminder_days"] = f"At most {MAX_REMINDERS} reminders."
        elif any(not isinstance(d, int) or not 1 <= d <= 90 for d in days):
            errors["reminder_days"] = "Reminder days are whole days after the invitation, 1 to 90."
        elif list(days) != sorted(set(days)):
            errors["reminder_days"] = "List reminder days once each, in increasing order."
        if errors:
            raise ValidationError(errors)
        return current

    def to_json(self) -> dict:
        data = asdict(self)
        data["reminder_days"] = list(self.reminder_days)
        return data


def parse_reminder_days(text: str) -> tuple[int, ...]:
    """'3, 7' → (3, 7). Raises ValidationError with a readable message."""
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    try:
        return tuple(int(p) for p in parts)
    except ValueError as exc:
        raise ValidationError(
            {"reminder_days": "Write reminder days as whole numbers, e.g. 3, 7."}
        ) from exc
