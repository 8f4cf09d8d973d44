"""Metrics forms: they validate and convert, they never act."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from metrics.selectors import Filters

MAX_RANGE_DAYS = 366


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault(
            "widget", MultipleFileInput(attrs={"accept": ".json,.ndjson,.csv,.gz,.jsonl,.txt"})
        )
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        files = data if isinstance(data, list | tuple) else [data]
        return [single(f, initial) for f in files if f] or [single(None, initial)]


class UploadForm(forms.Form):
    files = MultipleFileField(
        label="Files",
        help_text="One report, in one or several files: .json, .ndjson, .csv, optionally gzipped.",
    )
    skip_invalid = forms.BooleanField(
        required=False,
        label="Skip bad lines",
        help_text="Store the good lines and list the bad ones (the run is “partial”). "
        "Without it, one bad line fails the whole upload and nothing is stored.",
    )

    def clean_files(self):
        files = self.cleaned_data["files"]
        limit = settings.TAP_METRICS_MAX_UPLOAD_BYTES
        if len(files) > 20:
            raise forms.ValidationError("Upload at most 20 files at once.")
        for upload in files:
            if upload.size > limit:
                raise forms.ValidationError(
                    f"“{upload.name}” is {filesizeformat(upload.size)}; the limit is "
                    f"{filesizeformat(limit)} per file. Split the export into several files "
                    "and upload them together, or push them through the API."
                )
            if upload.size == 0:
                raise forms.ValidationError(f"“{upload.name}” is empty.")
        return files


class FilterForm(forms.Form):
    """The dashboards' date range and tool. A field that does not validate is ignored (its
    default applies) and its error shown; the valid fields still apply."""

    # Far enough for any real export, near enough that week arithmetic never overflows.
    FIRST_DAY = dt.date(2000, 1, 1)
    LAST_DAY = dt.date(2099, 12, 31)

    start = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    tool = forms.CharField(required=False, max_length=50)

    def __init__(self, *args, tools: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.tools = tools
        # Said on the page next to the filter: what was adjusted, and why.
        self.notices: list[str] = []

    def _clean_day(self, name: str):
        day = self.cleaned_data.get(name)
        if day is not None and not self.FIRST_DAY <= day <= self.LAST_DAY:
            raise forms.ValidationError(
                f"Choose a day between {self.FIRST_DAY:%-d %B %Y} and {self.LAST_DAY:%-d %B %Y}."
            )
        return day

    def clean_start(self):
        return self._clean_day("start")

    def clean_end(self):
        return self._clean_day("end")

    def clean_tool(self):
        tool = self.cleaned_data["tool"].strip().lower()
        if tool and tool not in self.tools:
            raise forms.ValidationError(
                f"No metrics for a tool called “{tool[:50]}”: showing all tools."
            )
        return tool

    def filters(self, default_start: dt.date, default_end: dt.date) -> Filters:
        data = {}
        if self.is_bound:
            self.is_valid()  # `cleaned_data` then holds the fields that passed, and only them
            data = self.cleaned_data
        start, end = data.get("start"), data.get("end")
        span = default_end - default_start
        # One end given: the default range's length from it.
        if end is None:
            end = default_end if start is None or start <= default_end else start + span
        if start is None:
            start = end - span
        if start > end:
            start, end = end, start
            self.notices.append("“From” came after “To”: the two are swapped.")
        if (end - start).days >= MAX_RANGE_DAYS:
            start = end - dt.timedelta(days=MAX_RANGE_DAYS - 1)
            self.notices.append(
                f"At most {MAX_RANGE_DAYS} days at a time: showing the {MAX_RANGE_DAYS} days "
                f"up to {end:%-d %B %Y}."
            )
        return Filters(start=start, end=end, tool=data.get("tool") or "")


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. “nightly Copilot export”.")


class MergeForm(forms.Form):
    keep = forms.UUIDField()
    other = forms.UUIDField()
