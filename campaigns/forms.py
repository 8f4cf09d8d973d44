"""Forms for the creator's pages: they validate and convert, the services act."""

from __future__ import annotations

from datetime import UTC, datetime, time

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns.models import Campaign, Participant
from campaigns.participant_input import MAX_CSV_BYTES
from campaigns.settings_schema import TONES, CampaignSettings, parse_reminder_days

# A close date means "until the end of that day" (UTC, the app's time zone).
CLOSING_TIME = time(23, 59, tzinfo=UTC)


class CampaignForm(forms.Form):
    name = forms.CharField(max_length=200)
    mission = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="What you want to learn and why. The interviewer works from it.",
    )
    opening_question = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="The first question every participant sees.",
    )
    max_follow_ups = forms.IntegerField(
        label="Follow-up questions",
        min_value=1,
        max_value=10,
        initial=CampaignSettings.max_follow_ups,
        help_text="How many follow-ups the interviewer may ask, 1 to 10.",
    )
    tone = forms.ChoiceField(
        choices=[(t, t.capitalize()) for t in TONES], initial=CampaignSettings.tone
    )
    language = forms.CharField(max_length=40, initial=CampaignSettings.language)
    anonymous = forms.BooleanField(
        label="Anonymous responses",
        required=False,
        help_text="Transcripts and exports name people “Participant 1”, “Participant 2”…",
    )
    closing_message = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        initial=CampaignSettings.closing_message,
        help_text="Shown when a participant finishes.",
    )
    reminder_days = forms.CharField(
        label="Reminders",
        required=False,
        initial="3, 7",
        help_text="Days after the invitation, e.g. <code>3, 7</code>; at most 3. Empty: none.",
    )
    closes_on = forms.DateField(
        label="Close date",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The campaign completes itself at the end of this day (UTC).",
    )

    def clean_closes_on(self):
        day = self.cleaned_data["closes_on"]
        # Only a newly chosen date must lie ahead: re-saving an old campaign keeps its own.
        if day and "closes_on" in self.changed_data and day < timezone.now().date():
            raise ValidationError("Choose today or a later day.")
        return day

    def clean(self):
        data = super().clean()
        try:
            days = parse_reminder_days(data.get("reminder_days") or "")
            data["settings"] = CampaignSettings.validated(
                max_follow_ups=data.get("max_follow_ups"),
                tone=data.get("tone"),
                language=(data.get("language") or "").strip(),
                anonymous=data.get("anonymous", False),
                closing_message=(data.get("closing_message") or "").strip(),
                reminder_days=days,
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                if field not in self.errors:
                    self.add_error(field if field in self.fields else None, errors)
        day = data.get("closes_on")
        data["closes_at"] = datetime.combine(day, CLOSING_TIME) if day else None
        return data

    @classmethod
    def initial_for(cls, campaign: Campaign) -> dict:
        options = campaign.options
        return {
            "name": campaign.name,
            "mission": campaign.mission,
            "opening_question": campaign.opening_question,
            "max_follow_ups": options.max_follow_ups,
            "tone": options.tone,
            "language": options.language,
            "anonymous": options.anonymous,
            "closing_message": options.closing_message,
            "reminder_days": ", ".join(str(d) for d in options.reminder_days),
            "closes_on": campaign.closes_at.astimezone(UTC).date() if campaign.closes_at else None,
            "mission_summary": campaign.mission_summary,
        }


class CampaignEditForm(CampaignForm):
    mission_summary = forms.CharField(
        label="Mission summary",
        required=False,
        max_length=500,
        help_text="One sentence, shown in lists. Written for you after saving; "
        "once you edit it, it stays as you wrote it.",
    )


class ParticipantsAddForm(forms.Form):
    addresses = forms.CharField(
        label="Paste addresses",
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
        help_text="One per line, or separated by commas. <code>Name &lt;email&gt;</code> works.",
    )
    csv_file = forms.FileField(
        label="Or upload a CSV",
        required=False,
        help_text=f"Columns <code>email,name</code>, UTF-8, up to {MAX_CSV_BYTES // 1_048_576} MB.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )

    def clean_csv_file(self):
        upload = self.cleaned_data.get("csv_file")
        # Refuse an oversized file on its declared size, before reading it into memory.
        if upload and upload.size > MAX_CSV_BYTES:
            raise ValidationError(
                f"The file is {upload.size / 1_048_576:.1f} MB; the limit is "
                f"{MAX_CSV_BYTES // 1_048_576} MB. Split it into smaller files."
            )
        return upload

    def clean(self):
        data = super().clean()
        pasted, upload = (data.get("addresses") or "").strip(), data.get("csv_file")
        if self.errors:
            return data
        if pasted and upload:
            raise ValidationError("Paste addresses or upload a file, not both at once.")
        if not pasted and not upload:
            raise ValidationError("Paste some addresses or choose a CSV file.")
        return data


class ParticipantFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *Participant.Status.choices]
    )


class CampaignFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *Campaign.Status.choices]
    )
    q = forms.CharField(required=False, max_length=200, label="Name")
    archived = forms.BooleanField(required=False, label="Include archived")
