"""Request and response bodies of the authn API (they make its OpenAPI schema)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from services.authn.bootstrap import MAX_TENANT_NAME
from services.authn.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from shared.store.accounts import ApiKey, Role, Tenant, User, UserStatus


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class ErrorOut(BaseModel):
    detail: str


class TokenRequest(BaseModel):
    # A plain string, not EmailStr: logging in must answer 401 for any unknown
    # address, and the demo admin's address (.local) is one EmailStr refuses.
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"email": "admin@example.com", "password": "correct horse battery staple"}],
        }
    )


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=200)
    model_config = ConfigDict(json_schema_extra={"examples": [{"refresh_token": "q3J0bX2v...8sQ"}]})


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds the access token is valid")
    refresh_token: str = Field(description="spend it once at POST /api/v1/auth/refresh for a new pair")
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
                    "token_type": "bearer",
                    "expires_in": 900,
                    "refresh_token": "q3J0bX2v...8sQ",
                }
            ]
        }
    )


class TenantOut(BaseModel):
    id: int
    name: str
    created_at: datetime

    @classmethod
    def of(cls, tenant: Tenant) -> TenantOut:
        return cls(id=tenant.id, name=tenant.name, created_at=utc(tenant.created_at))


class TenantRef(BaseModel):
    id: int
    name: str


class MeOut(BaseModel):
    via: Literal["token", "api_key"]
    email: str | None = Field(description="null for an API key")
    role: Role
    platform_admin: bool
    user_id: int | None
    api_key_id: int | None
    tenant: TenantRef
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "via": "token",
                    "email": "admin@example.com",
                    "role": "admin",
                    "platform_admin": False,
                    "user_id": 3,
                    "api_key_id": None,
                    "tenant": {"id": 2, "name": "acme"},
                }
            ]
        }
    )


class TenantRequest(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_TENANT_NAME)
    admin_email: EmailStr
    admin_password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "acme",
                    "admin_email": "ops@acme.example",
                    "admin_password": "a long passphrase",
                }
            ]
        }
    )


class UserOut(BaseModel):
    id: int
    email: str
    role: Role
    platform_admin: bool

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, email=user.email, role=user.role, platform_admin=user.platform_admin)


class TenantCreated(BaseModel):
    tenant: TenantOut
    admin: UserOut


class TenantList(BaseModel):
    items: list[TenantOut]


class ApiKeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="what the key is for")
    role: Role = "viewer"
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "dispatch centre", "role": "supervisor"}]})


class ApiKeyOut(BaseModel):
    id: int
    name: str
    role: Role
    prefix: str = Field(description="the key's first characters, to recognise it")
    created_at: datetime
    revoked: bool
    last_used_at: datetime | None = Field(
        description="when the key last authenticated a request (updated at most once a minute); null if never"
    )

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(
            id=key.id,
            name=key.name,
            role=key.role,
            prefix=key.prefix,
            created_at=utc(key.created_at),
            revoked=key.revoked,
            last_used_at=None if key.last_used_at is None else utc(key.last_used_at),
        )


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="send it as `X-API-Key`; shown this once, never again")
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "name": "dispatch centre",
                    "role": "supervisor",
                    "prefix": "sw_4fJq9aZx",
                    "created_at": "2026-01-01T00:00:00Z",
                    "revoked": False,
                    "last_used_at": None,
                    "key": "sw_4fJq9aZx0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q",
                }
            ]
        }
    )


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


# -- users of a tenant (CONTRACT §5) -------------------------------------------------------

MAX_USER_NAME = 200
Password = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH, description="at least 12 characters")


class UserView(BaseModel):
    id: int
    email: str
    name: str
    role: Role
    status: UserStatus = Field(description="`invited` until the invitation is accepted; `disabled` cannot sign in")
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, user: User) -> UserView:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,
            status=user.status,
            created_at=utc(user.created_at),
            last_login_at=None if user.last_login_at is None else utc(user.last_login_at),
        )


class UserPage(BaseModel):
    items: list[UserView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class UserInvite(BaseModel):
    email: EmailStr
    name: str = Field(min_length=1, max_length=MAX_USER_NAME)
    role: Role
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email": "sam@acme.example", "name": "Sam Night", "role": "supervisor"}]},
    )


class Invitation(BaseModel):
    email_sent: bool = Field(description="false when no SMTP server is configured or it refused the email")
    expires_at: datetime
    link: str | None = Field(
        description="the single-use link, only when the email was not sent: hand it to the person another way"
    )


class UserInvited(UserView):
    invitation: Invitation


class UserPatch(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=MAX_USER_NAME)
    role: Role | None = None
    # Strict: 0, 1 or "yes" are refused, not taken for a boolean (disabling someone is not a guess).
    disabled: bool | None = Field(
        None, strict=True, description="true signs the user out everywhere at once; false re-enables"
    )
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "viewer"}, {"disabled": True}]})


class AcceptInvite(BaseModel):
    token: str = Field(min_length=1, max_length=200, description="the `token` of the invitation link")
    password: str = Password
    model_config = ConfigDict(json_schema_extra={"examples": [{"token": "Zq3...9w", "password": "a long passphrase"}]})


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    new_password: str = Password
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"current_password": "the old passphrase", "new_password": "a new long passphrase"}]
        }
    )


class PasswordResetRequest(BaseModel):
    # A plain string, as for logging in: an address EmailStr refuses (.local) may still have an account.
    email: str = Field(min_length=1, max_length=320)
    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "sam@acme.example"}]})


class PasswordResetConfirm(BaseModel):
    token: str = Field(min_length=1, max_length=200, description="the `token` of the reset link")
    password: str = Password
    model_config = ConfigDict(json_schema_extra={"examples": [{"token": "Zq3...9w", "password": "a long passphrase"}]})


class Accepted(BaseModel):
    detail: str
