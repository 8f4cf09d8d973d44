def navigation(request):
    """The org switcher: the user's organisations (one query, only on full pages)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or request.headers.get("HX-Request"):
        return {}

    def my_orgs():
        from tap.orgs.selectors import orgs_for_user  # noqa: PLC0415

        return orgs_for_user(user=user)

    return {"my_orgs": my_orgs, "current_org": getattr(request, "org", None)}
