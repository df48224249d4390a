"""Request and response bodies of the authn API (they make its OpenAPI schema)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from services.authn.bootstrap import MAX_TENANT_NAME
from services.authn.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from shared.store.accounts import ApiKey, Role, Tenant, User


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

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(
            id=key.id,
            name=key.name,
            role=key.role,
            prefix=key.prefix,
            created_at=utc(key.created_at),
            revoked=key.revoked,
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
                    "key": "sw_4fJq9aZx0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q",
                }
            ]
        }
    )


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]
