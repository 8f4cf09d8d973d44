from django.urls import include, path

from campaigns import views

app_name = "campaigns"

# Creator pages, under /o/<org_slug>/campaigns/ (see tap/urls.py).
participant = "<uuid:campaign_id>/participants/<uuid:participant_id>"
urlpatterns: list = [
    path("", views.campaign_list, name="list"),
    path("new/", views.campaign_create, name="create"),
    path("<uuid:campaign_id>/", views.campaign_detail, name="detail"),
    path("<uuid:campaign_id>/counts/", views.campaign_counts, name="counts"),
    path("<uuid:campaign_id>/edit/", views.campaign_edit, name="edit"),
    path("<uuid:campaign_id>/transition/", views.campaign_transition, name="transition"),
    path("<uuid:campaign_id>/participants/add/", views.participants_add, name="participants_add"),
    path(
        "<uuid:campaign_id>/participants/add/cohort/",
        views.participants_from_cohort,
        name="participants_from_cohort",
    ),
    path(f"{participant}/resend/", views.participant_resend, name="participant_resend"),
    path(f"{participant}/revoke/", views.participant_revoke, name="participant_revoke"),
    path(f"{participant}/unlink/", views.participant_unlink, name="participant_unlink"),
    path(f"{participant}/remove/", views.participant_remove, name="participant_remove"),
    path(f"{participant}/erase/", views.participant_erase, name="participant_erase"),
    path(
        f"{participant}/transcript/",
        views.participant_transcript,
        name="participant_transcript",
    ),
    path("<uuid:campaign_id>/responses/", views.responses, name="responses"),
    path(
        "<uuid:campaign_id>/responses/<uuid:conversation_id>/",
        views.transcript,
        name="transcript",
    ),
    path("<uuid:campaign_id>/export.csv", views.export_csv, name="export_csv"),
    path("<uuid:campaign_id>/export.json", views.export_json, name="export_json"),
    path("<uuid:campaign_id>/analysis/", include("conversations.analysis_urls")),
]
