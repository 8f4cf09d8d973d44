from django.urls import path

from metrics import api

app_name = "metrics_api"

# Under /api/v1/orgs/<slug>/metrics/ (see tap/urls.py); the key, not a session, authenticates.
urlpatterns = [
    path("uploads", api.upload, name="uploads"),
    path("runs/<uuid:run_id>", api.run_status, name="run"),
]
