from django.urls import path

from metrics import views

app_name = "metrics"

# Org pages, under /o/<org_slug>/metrics/ (see tap/urls.py).
urlpatterns: list = [
    path("", views.overview, name="overview"),
    path("cohorts/", views.cohorts, name="cohorts"),
    path("seats/", views.seats, name="seats"),
    path("freshness/", views.freshness, name="freshness"),
    path("templates/<slug:kind>.csv", views.csv_template, name="csv_template"),
    path("developers/", views.developers, name="developers"),
    path("developers/<uuid:identity_id>/", views.developer, name="developer"),
    path("identities/", views.identities, name="identities"),
    path("identities/merge/", views.identity_merge, name="identity_merge"),
    path(
        "identities/<uuid:identity_id>/reviewed/",
        views.identity_reviewed,
        name="identity_reviewed",
    ),
    path("upload/", views.upload, name="upload"),
    path("runs/<uuid:run_id>/", views.run_detail, name="run"),
    path("runs/<uuid:run_id>/progress/", views.run_progress, name="run_progress"),
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<uuid:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
]
