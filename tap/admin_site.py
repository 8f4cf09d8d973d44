"""The admin site (Django's, named in INSTALLED_APPS through `tap.apps.TapAdminConfig`).

Kept apart from tap/admin.py, whose registrations need the site to exist first."""

import functools

from django.contrib import admin

from tap.tenancy import staff_scope


class TapAdminSite(admin.AdminSite):
    """Every admin view, once the staff check has passed, runs in `staff_scope`: tenant
    managers span organisations and the ORM uses the service connection, so the widgets,
    inlines and uniqueness checks Django builds from default managers work too."""

    def admin_view(self, view, cacheable=False):
        @functools.wraps(view)
        def across_organisations(request, *args, **kwargs):
            with staff_scope():
                response = view(request, *args, **kwargs)
                # Admin pages are TemplateResponses, rendered after the view returns: render
                # here, while the scope still holds (the forms query as they render).
                if hasattr(response, "render") and not response.is_rendered:
                    response.render()
                return response

        return super().admin_view(across_organisations, cacheable)
