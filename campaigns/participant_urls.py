from django.urls import path

from campaigns import participant_views as views

app_name = "participant"

# Participant pages, under /c/ (see tap/urls.py). The token appears only in the emailed
# URLs below; `home` is the token-free page the landing redirects to.
urlpatterns = [
    path("", views.home, name="home"),
    path("<str:token>/", views.link, name="link"),
    path("<str:token>/decline/", views.decline, name="decline"),
]
