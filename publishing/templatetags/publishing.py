"""`{% load publishing %}{% release_targets release as targets %}`: the publication targets
section of the release page reads its rows here, so releases/views.py needs no import of this
app (releases does not depend on publishing)."""

from django import template

from publishing.selectors import release_targets as _release_targets

register = template.Library()


@register.simple_tag(takes_context=True)
def release_targets(context, release):
    return _release_targets(context["request"].user, release)
