"/api/v1/contacts: who is told about which kinds of alert."

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response

from services.api.deps import AdminPrincipal, ContextDep, CurrentPrincipal, ResourceId
from services.api.models import ContactIn, ContactList, ContactOut
from services.authn.models import ErrorOut
from shared.alerts import iso_utc
from shared.store.alerts import Contact

router = APIRouter(prefix="/api/v1/contacts", tags=["contacts"])


def contact_view(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "name": contact.name,
        "email": contact.email,
        "phone": contact.phone,
        "kinds": list(contact.kinds),
        "created_at": iso_utc(contact.created_at, millis=True),
    }


@router.get("", response_model=ContactList, summary="List the tenant's contacts")
async def list_contacts(context: ContextDep, principal: CurrentPrincipal) -> dict[str, Any]:
    return {"items": [contact_view(c) for c in await context.store.contacts(principal.tenant_id)]}


@router.post("", status_code=201, response_model=ContactOut, summary="Add a contact (admin)")
async def add_contact(body: ContactIn, context: ContextDep, principal: AdminPrincipal) -> dict[str, Any]:
    contact = await context.store.add_contact(
        tenant_id=principal.tenant_id,
        name=body.name,
        email=body.email,
        phone=body.phone,
        kinds=tuple(body.kinds),
        audit=principal.audit("contact.create", "contact", name=body.name),
    )
    return contact_view(contact)


@router.delete(
    "/{contact_id}",
    status_code=204,
    response_class=Response,
    summary="Remove a contact (admin)",
    responses={404: {"model": ErrorOut, "description": "no such contact in the caller's tenant"}},
)
async def delete_contact(contact_id: ResourceId, context: ContextDep, principal: AdminPrincipal) -> Response:
    audit = principal.audit("contact.delete", "contact", contact_id)
    if not await context.store.delete_contact(principal.tenant_id, contact_id, audit=audit):
        raise HTTPException(404, "contact not found")
    return Response(status_code=204)
