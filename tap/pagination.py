"""Pages of a long list, with the page links `templates/_pagination.html` draws."""

from __future__ import annotations

from django.core.paginator import Page, Paginator


def paginate(request, rows, per_page: int) -> Page:
    """The page `?page=` asks for (the first for nonsense, the last past the end), with
    `elided`: its page numbers, the far ones elided."""
    page = Paginator(rows, per_page).get_page(request.GET.get("page"))
    page.elided = page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)
    return page
