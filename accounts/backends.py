"""The lockout check on every password sign-in (django-axes)."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend


class LockoutBackend(AxesStandaloneBackend):
    """axes' check, for sign-ins that come with a request (the login page and the admin's).
    Server-side code that calls authenticate() without one (the test client's login) is not a
    brute-force path and is passed on to the model backend instead of failing."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
