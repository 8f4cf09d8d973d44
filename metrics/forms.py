"""Metrics forms: they validate and convert, they never act."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.conf import settings

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
                    f"“{upload.name}” is {upload.size // (1 << 20)} MB; the limit is "
                    f"{limit // (1 << 20)} MB per file. Split the export into several files "
                    "and upload them together, or push them through the API."
                )
            if upload.size == 0:
                raise forms.ValidationError(f"“{upload.name}” is empty.")
        return files


class FilterForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    tool = forms.CharField(required=False, max_length=50)

    def filters(self, default_start: dt.date, default_end: dt.date) -> Filters:
        data = self.cleaned_data if self.is_valid() else {}
        start = data.get("start") or default_start
        end = data.get("end") or default_end
        if start > end:
            start, end = end, start
        if (end - start).days >= MAX_RANGE_DAYS:
            start = end - dt.timedelta(days=MAX_RANGE_DAYS - 1)
        return Filters(start=start, end=end, tool=(data.get("tool") or "").strip().lower())


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. “nightly Copilot export”.")


class MergeForm(forms.Form):
    keep = forms.UUIDField()
    other = forms.UUIDField()
