"""Emails are template trios — templates/emails/<name>-subject.txt, -body.txt, -body.html —
built here and sent only from tasks, never in a request."""

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string


def build_email(name: str, *, to: str, context: dict, from_name: str | None = None):
    context = {"base_url": settings.TAP_BASE_URL, **context}
    subject = " ".join(render_to_string(f"emails/{name}-subject.txt", context).split())
    text = render_to_string(f"emails/{name}-body.txt", context)
    html = render_to_string(f"emails/{name}-body.html", context)
    from_email = settings.DEFAULT_FROM_EMAIL
    if from_name:
        address = from_email.rsplit("<", 1)[-1].rstrip(">").strip()
        from_email = f'"{from_name.replace(chr(34), "")}" <{address}>'
    message = EmailMultiAlternatives(subject, text, from_email, [to])
    message.attach_alternative(html, "text/html")
    return message


def send_email(name: str, *, to: str, context: dict, from_name: str | None = None) -> None:
    build_email(name, to=to, context=context, from_name=from_name).send()
