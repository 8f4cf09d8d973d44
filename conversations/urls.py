from django.urls import path

from conversations import views

app_name = "chat"

# The participant's chat, under /c/ and before the emailed /c/<token>/ (tap/urls.py). No token
# in these URLs: the session holds the link (campaigns.links).
urlpatterns = [
    path("", views.home, name="home"),
    path("messages/", views.message, name="message"),
    path("poll/", views.poll, name="poll"),
    path("retry/", views.retry, name="retry"),
    path("end/", views.end, name="end"),
]
