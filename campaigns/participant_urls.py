from django.urls import path

from campaigns import participant_views as views

app_name = "participant"

# Participant pages, under /c/ (see tap/urls.py). The token appears only in the emailed
# URLs below; the landing redirects to the token-free chat (`chat:home`, conversations.urls).
urlpatterns = [
    path("<str:token>/", views.link, name="link"),
    path("<str:token>/decline/", views.decline, name="decline"),
]
