from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from tap import views as platform_views
from tap.orgs import views as org_views

accounts = [
    path("login/", org_views.LoginView.as_view(), name="login"),
    path("logout/", org_views.LogoutView.as_view(), name="logout"),
    path("signup/", org_views.signup, name="signup"),
    path("password/change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password/change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("password/reset/", org_views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
]

urlpatterns = [
    path("", org_views.home, name="home"),
    # Answered by tap.views.ProbeMiddleware before the session and tenant stack; routed here too
    # so `reverse()` knows them.
    path("healthz", platform_views.healthz, name="healthz"),
    path("readyz", platform_views.readyz, name="readyz"),
    path("ping", platform_views.ping, name="ping"),
    path("accounts/", include(accounts)),
    path("", include("tap.orgs.urls")),
    path("o/<slug:org_slug>/campaigns/", include("campaigns.urls")),
    path("o/<slug:org_slug>/metrics/", include("metrics.urls")),
    path("api/v1/orgs/<slug:slug>/metrics/", include("metrics.api_urls")),
    # The chat first: its fixed paths (/c/, /c/messages/ …) before the emailed /c/<token>/.
    path("c/", include("conversations.urls")),
    path("c/", include("campaigns.participant_urls")),
    path("admin/", admin.site.urls),
]
