"""seed_demo's metrics: loaded through the real ingestion path, once."""

import pytest

from metrics import demo
from metrics.models import CopilotSeat, DailyDeveloperMetric, DeveloperIdentity, DeveloperTeam
from metrics.selectors import unmatched_identities
from tap.tenancy import org_context

pytestmark = pytest.mark.django_db


def test_demo_metrics_load_once(org_a):
    assert demo.seed(org_a) == 4
    with org_context(org_a.id):
        tools = set(DailyDeveloperMetric.objects.values_list("tool", flat=True))
        assert tools == {"copilot", "claude_code"}
        # The identity map joined logins and emails: one identity per person (+2 seat-only,
        # +2 for the halves of the one it leaves out, which the identities page pairs).
        assert DeveloperIdentity.objects.count() == len(demo.PEOPLE) + 2 + 2
        suggested = {
            u["identity"].github_login: [s["identity"].email for s in u["suggestions"]]
            for u in unmatched_identities()
            if u["identity"].github_login
        }
        assert suggested == {
            "left-company": [],
            "unused-seat": [],
            "mary-keller": [demo.UNMAPPED[1]],
        }
        assert DeveloperTeam.objects.count() == len(demo.PEOPLE)
        assert CopilotSeat.objects.count() == len(demo.PEOPLE) + 2
        before = DailyDeveloperMetric.objects.count()
    assert demo.seed(org_a) == 0
    with org_context(org_a.id):
        assert DailyDeveloperMetric.objects.count() == before
