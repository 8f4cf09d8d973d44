app_name = "participant"

# Participant pages, under /c/ (see tap/urls.py).
urlpatterns: list = []
