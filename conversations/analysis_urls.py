from django.urls import path

from conversations import analysis_views as views

app_name = "analysis"

# Campaign analysis, under /o/<org_slug>/campaigns/<campaign_id>/analysis/ (see campaigns/urls.py).
urlpatterns: list = [
    path("", views.analysis_page, name="page"),
    path("progress/", views.analysis_progress, name="progress"),
    path("refresh/", views.analysis_refresh, name="refresh"),
    path("report.md", views.analysis_export_markdown, name="export_markdown"),
    path("conversations.csv", views.analysis_export_csv, name="export_csv"),
]
