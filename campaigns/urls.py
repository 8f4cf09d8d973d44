app_name = "campaigns"

# Creator pages, under /o/<org_slug>/campaigns/ (see tap/urls.py).
urlpatterns: list = []
