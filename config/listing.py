"""Every list page pages and searches the same way: `?q=` (words to find) and `?page=`."""

from __future__ import annotations

from functools import reduce
from operator import and_

from django.core.paginator import Paginator
from django.db.models import Q

PER_PAGE = 50


def search(items, query: str, *fields: str):
    """`items` (a queryset) whose `fields` contain every word of `query`, case-insensitively."""
    words = (query or "").split()[:8]
    if not words:
        return items
    return items.filter(reduce(and_, (reduce(lambda a, b: a | b, (
        Q(**{f"{field}__icontains": word}) for field in fields)) for word in words)))


def page_of(request, items, per_page: int = PER_PAGE):
    """One page of `items` (a queryset or list) for `?page=` (a bad page is the last one)."""
    return Paginator(items, per_page).get_page(request.GET.get("page"))


def query_without_page(request) -> str:
    """The current query string without `page`, for the pager's links."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()
