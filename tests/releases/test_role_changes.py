"""An approval counts only while its reviewer holds the role it was given under: checked when
the gates are read and again at publish, through the API, the page and the Hub."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from huggingface_hub import HfApi
from huggingface_hub.errors import RevisionNotFoundError

from audit.models import AuditEvent
from releases import clock, workflow
from releases.models import Release
from tests.conftest import token_for
from tests.releases.conftest import run_pending_evals
from tests.releases.stages import grant, release_at

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def approved_for_gated(personas, simple_policy, tiny_model_dir):
    release = release_at(personas, "partners", family="lab/roles", folder=tiny_model_dir)
    grant(personas, release, personas.erin)
    workflow.request_next_stage(actor=personas.alice, release=release)
    run_pending_evals(release)
    for reviewer in (personas.bob, personas.carol):
        workflow.approve_release(actor=reviewer, release=Release.objects.get(pk=release.pk),
                                 stage="gated", comment="looked at everything")
    clock.advance(timedelta(days=7))  # the dwell: only the approvals stand in the way now
    release = Release.objects.get(pk=release.pk)
    assert release.status == "approved"
    return release


def test_reviewers_who_lost_their_roles_no_longer_count_and_nothing_is_published(
        stagegate_server, approved_for_gated, personas, api_client_for, client):
    release = approved_for_gated
    personas.bob.groups.clear()
    personas.carol.groups.remove(Group.objects.get(name="policy"))

    release = Release.objects.get(pk=release.pk)
    assert release.status == "in_review"  # the quorum lapsed: back to review
    # bob's loss lapsed the approval (one event); carol's, in review already, only counts less.
    lapsed = AuditEvent.objects.get(verb="release.approval_lapsed")
    assert lapsed.data["not_counted"] == ["bob (no longer holds the role safety)"]
    assert ",safety," in release.awaiting_roles and ",policy," in release.awaiting_roles

    dave = api_client_for(personas.dave)
    detail = dave.get(f"/api/v1/releases/{release.pk}/").json()
    gate = next(g for g in detail["gates"] if g["name"] == "approvals:safety")
    assert not gate["passed"]
    assert "not counted: bob (no longer holds the role safety)" in gate["reason"]
    gate = next(g for g in detail["gates"] if g["name"] == "approvals:policy")
    assert "not counted: carol (no longer holds the role policy)" in gate["reason"]
    assert [(a["reviewer"], a["counts"]) for a in detail["approvals"]
            if a["decision"] == "approve" and a["stage"] == "gated"] == [("bob", False),
                                                                         ("carol", False)]
    assert detail["actions"]["publish"]["allowed"] is False
    response = dave.post(f"/api/v1/releases/{release.pk}/publish/", {"stage": "gated"},
                         format="json")
    assert response.status_code == 409
    client.force_login(personas.dave)
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert "no longer holds the role safety" in page and 'id="publish"' not in page

    # What the audience gets: still the partners stage, and no gated revision at all.
    api = HfApi(endpoint=stagegate_server.url)
    erin = token_for(personas.erin, "read")
    assert api.model_info("lab/roles", token=erin).sha == release.checkpoint.commit
    with pytest.raises(RevisionNotFoundError):
        api.model_info("lab/roles", revision="gated", token=erin)
    assert Release.objects.get(pk=release.pk).current_stage == "partners"

    # Given back their roles, the approvals they gave count again.
    personas.bob.groups.add(Group.objects.get(name="safety"))
    assert Release.objects.get(pk=release.pk).status == "in_review"
    personas.carol.groups.add(Group.objects.get(name="policy"))
    release = Release.objects.get(pk=release.pk)
    assert release.status == "approved"
    assert AuditEvent.objects.filter(verb="release.quorum_met").count() == 1
    assert dave.post(f"/api/v1/releases/{release.pk}/publish/", {"stage": "gated"},
                     format="json").status_code == 200
    assert api.model_info("lab/roles", revision="gated", token=erin).sha == release.checkpoint.commit


def test_a_role_lost_between_approval_and_publish_is_caught_at_publish(approved_for_gated,
                                                                       personas):
    """Even when nothing re-checked the release in between (the role was removed without a
    signal, straight in the database), publishing reads the roles as they are."""
    from django.contrib.auth.models import User

    release = approved_for_gated
    User.groups.through.objects.filter(user=personas.bob).delete()  # no m2m signal
    assert Release.objects.get(pk=release.pk).status == "approved"
    from releases.errors import TransitionNotAllowed

    with pytest.raises(TransitionNotAllowed, match="bob \\(no longer holds the role safety\\)"):
        workflow.publish_release(actor=personas.dave, release=Release.objects.get(pk=release.pk),
                                 stage="gated")
    assert Release.objects.get(pk=release.pk).current_stage == "partners"


def test_a_deactivated_reviewer_counts_no_more(approved_for_gated, personas):
    personas.carol.is_active = False
    personas.carol.save()
    release = Release.objects.get(pk=approved_for_gated.pk)
    assert release.status == "in_review"
    workflow.recheck_approvals(release_id=release.pk)  # runs twice: nothing more happens
    assert AuditEvent.objects.filter(verb="release.approval_lapsed").count() == 1


def test_a_repeated_approval_says_it_was_already_counted(personas, simple_policy, api_client_for):
    release = release_at(personas, "partners", family="lab/twice")
    workflow.request_next_stage(actor=personas.alice, release=release)
    run_pending_evals(release)
    bob = api_client_for(personas.bob)
    first = bob.post(f"/api/v1/releases/{release.pk}/approve/", {"stage": "gated"},
                     format="json").json()
    assert "notice" not in first
    events = AuditEvent.objects.count()
    again = bob.post(f"/api/v1/releases/{release.pk}/approve/", {"stage": "gated"},
                     format="json").json()
    assert again["notice"] == "your approval of gated is already counted"
    assert again["actions"]["approve"] == {"allowed": False,
                                           "reason": "your approval of gated is already counted"}
    assert AuditEvent.objects.count() == events


def test_approvals_for_one_stage_never_open_the_gates_of_the_next(personas, simple_policy,
                                                                  client):
    """Published at partners on bob's approval: the page's preview of gated needs approvals of
    its own, and says so, instead of "all gates pass"."""
    release = release_at(personas, "partners", family="lab/next")
    from releases.standing import release_standing

    standing = release_standing(Release.objects.get(pk=release.pk))
    assert standing.stage == "gated"
    gate = next(g for g in standing.gates if g.name == "approvals:safety")
    assert not gate.passed and gate.reason == "needs 1 more approval from role safety"
    client.force_login(personas.dave)
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert "all gates pass" not in page
