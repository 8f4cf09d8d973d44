from django.urls import path  # noqa: F401  (the analysis issue fills this in)

app_name = "analysis"

# Campaign analysis, under /o/<org_slug>/campaigns/<campaign_id>/analysis/ (see campaigns/urls.py).
urlpatterns: list = []
