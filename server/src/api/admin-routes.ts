import type { Router } from 'express';
import type { ApiRegistry } from './registry.js';
import { adminAuditRoutes } from './admin/audit.js';
import { adminDesktopRoutes } from './admin/desktops.js';
import { adminEntitlementRoutes } from './admin/entitlements.js';
import { adminGroupRoutes } from './admin/groups.js';
import { adminHostRoutes } from './admin/hosts.js';
import { adminPoolRoutes } from './admin/pools.js';
import { AdminScope, type AdminDeps } from './admin/scope.js';
import { adminSessionRoutes } from './admin/sessions.js';
import { adminUserRoutes } from './admin/users.js';

/**
 * The admin console's API under /api/admin, one file a section in admin/: users, groups,
 * pools, entitlements, sessions, desktops, audit, hosts. Each route validates and authorises, then
 * calls the broker (or, for plain records, the store).
 */
export function adminRoutes(router: Router, reg: ApiRegistry, deps: AdminDeps): void {
  const admin = new AdminScope(router, reg, deps);
  adminUserRoutes(admin);
  adminGroupRoutes(admin);
  adminPoolRoutes(admin);
  adminEntitlementRoutes(admin);
  adminSessionRoutes(admin);
  adminDesktopRoutes(admin);
  adminAuditRoutes(admin);
  adminHostRoutes(admin);
}
