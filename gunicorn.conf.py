"""gunicorn reads this from the working directory: the access log must not print the
participant tokens that travel in /c/<token>/ paths (tap/logging.py)."""

logger_class = "tap.logging.RedactingGunicornLogger"
