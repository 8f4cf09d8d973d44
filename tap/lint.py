"""Project rules a general linter cannot know (style.md, reliability.md). `make lint` runs it.

python -m tap.lint          # exit 1 and one line per finding when a rule is broken
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ["tap", "campaigns", "conversations", "metrics"]

# (files it applies to, pattern, why) — each pattern is a mistake that has bitten systems like
# this one; the reason is printed with the finding.
RULES: list[tuple[str, re.Pattern[str], str]] = [
    (
        "**/*.py",
        re.compile(r"set_config\([^)]*,\s*(false|False)\s*\)"),
        "session-level set_config leaks the tenant across reused connections; use "
        "transaction-local (true) through tap.tenancy",
    ),
    (
        "**/*.py",
        re.compile(r"\bSET\s+(SESSION\s+)?tap\.", re.IGNORECASE),
        "SET of tenant settings leaks across connections; use tap.tenancy",
    ),
    (
        "**/*.py",
        re.compile(r"\.(delay|apply_async)\("),
        "publish through the outbox (tap.outbox.enqueue), never straight to the broker",
    ),
    (
        "**/views.py",
        re.compile(r"\ball_objects\b|\.using\(\s*[\"']service[\"']"),
        "views reach tenant rows only through scoped querysets, never the unscoped manager "
        "or the service connection",
    ),
    (
        "**/views.py",
        re.compile(r"\b(send_mail|send_email|EmailMessage|EmailMultiAlternatives)\b"),
        "emails are sent from tasks, never in a request",
    ),
    (
        "**/views.py",
        re.compile(r"\b[A-Z]\w+\.objects\.get\("),
        "a raw .objects.get in a view turns a missing or foreign row into a 500; use "
        "get_object_or_404 on a scoped queryset",
    ),
]

TEMPLATE_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE), "inline <script> breaks the CSP"),
    (re.compile(r"<style\b", re.IGNORECASE), "inline <style> breaks the CSP"),
    (re.compile(r"\sstyle=\"", re.IGNORECASE), "style= attributes break the CSP"),
    (re.compile(r"\son[a-z]+=\"", re.IGNORECASE), "inline event handlers break the CSP"),
]


def python_files(pattern: str):
    for app in APPS:
        for path in (ROOT / app).glob(pattern):
            if "migrations" not in path.parts and path.name != "lint.py":
                yield path


def check() -> list[str]:
    findings = []
    for pattern, regex, why in RULES:
        for path in python_files(pattern):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if regex.search(line) and "lint: allow" not in line:
                    findings.append(f"{path.relative_to(ROOT)}:{number}: {why}")
    for path in (ROOT / "templates").rglob("*.html"):
        if "emails" in path.parts:
            continue  # email clients need inline styles; they never run under our CSP
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for regex, why in TEMPLATE_RULES:
                if regex.search(line):
                    findings.append(f"{path.relative_to(ROOT)}:{number}: {why}")
    return findings


def main() -> int:
    findings = check()
    for finding in findings:
        print(finding)
    print(f"tap.lint: {len(findings)} finding(s)")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
