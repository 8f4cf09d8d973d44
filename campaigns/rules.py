"""Campaign permissions: members read; admins and owners run campaigns."""

import rules

from tap.orgs.rules import is_org_admin, is_org_member

rules.add_perm("campaigns.view_campaign", is_org_member)
rules.add_perm("campaigns.manage_campaign", is_org_admin)
