"""Authentication: users, sessions (access and refresh tokens), API keys, roles.

routes.router             the /api/v1 auth, tenants and api-keys paths
deps                      Principal, CurrentPrincipal, AdminPrincipal, SupervisorPrincipal, ...
tokens                    signing_secret, decode_access_token, sessions
bootstrap                 ensure_first_admin, add_tenant
"""
