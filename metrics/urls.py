from django.urls import path  # noqa: F401  (the metrics issue fills this in)

app_name = "metrics"

# Org pages, under /o/<org_slug>/metrics/ (see tap/urls.py).
urlpatterns: list = []
