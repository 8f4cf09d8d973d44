from django.urls import include, path

from tap.orgs import views

app_name = "orgs"

# Organisation pages: everything under /o/<org_slug>/ goes through TenancyMiddleware.
org_patterns = [
    path("", views.dashboard, name="dashboard"),
    path("settings/", views.org_settings, name="settings"),
    path("settings/retention/", views.org_retention, name="retention"),
    path("export/", views.org_export, name="export"),
    path("delete/", views.org_delete, name="delete"),
    path("members/", views.members, name="members"),
    path("members/invite/", views.member_invite, name="invite"),
    path("members/<uuid:member_id>/role/", views.member_role, name="member_role"),
    path("members/<uuid:member_id>/remove/", views.member_remove, name="member_remove"),
    path(
        "invitations/<uuid:invitation_id>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("leave/", views.org_leave, name="leave"),
    path("activity/", views.activity, name="activity"),
]

urlpatterns = [
    path("orgs/new/", views.org_create, name="create"),
    path("invitations/accept/", views.invitation_accept, name="invitation_accept"),
    path("invitations/<str:token>/", views.invitation, name="invitation"),
    path("o/<slug:org_slug>/", include(org_patterns)),
]
