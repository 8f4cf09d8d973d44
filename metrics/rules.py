"""Metrics permissions: members read aggregates; admins and owners see people and upload;
owners manage API keys."""

import rules

from tap.orgs.rules import is_org_admin, is_org_member, is_org_owner

rules.add_perm("metrics.view_metrics", is_org_member)
# Per-person rows (developer pages, unmatched identities, who never used a seat).
rules.add_perm("metrics.view_people", is_org_admin)
rules.add_perm("metrics.manage_metrics", is_org_admin)
rules.add_perm("metrics.manage_api_keys", is_org_owner)
