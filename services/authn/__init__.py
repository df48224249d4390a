"""Authentication: users, sessions (access and refresh tokens), API keys, roles.

api.router                every path below, for the app factory
routes.router             the /api/v1 auth (token, refresh, logout, me), tenants and api-keys paths
users.router              /api/v1/users: list, invite, re-invite, change, disable (tenant admins)
recovery.router           accept-invite, password change, password reset
account_mail              single-use links (invitation, reset) and their emails
deps                      Principal, CurrentPrincipal, AdminPrincipal, SupervisorPrincipal, ...
tokens                    signing_secret, decode_access_token, sessions, revoke_user_sessions
bootstrap                 ensure_first_admin, add_tenant
"""
